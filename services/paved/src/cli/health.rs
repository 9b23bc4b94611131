//! `paved health`: asks a running Paved's `grpc.health.v1` (no token
//! needed), for container healthchecks and operators.

use anyhow::Context as _;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(clap::Args, Debug)]
pub struct HealthArgs {
    /// Paved's gRPC address.
    #[arg(long, env = "PAVED_SERVER", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// The service to ask about: "" (the default) is the whole process; e.g.
    /// `paved.v1.CatalogService` or `paved.projection.catalog`.
    #[arg(long, default_value = "")]
    service: String,
}

/// Exits 0 when SERVING, 1 otherwise (printing the status).
pub async fn health(a: HealthArgs) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(a.server.clone())?
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(3))
        .connect()
        .await
        .with_context(|| format!("cannot reach Paved at {}", a.server))?;
    let status = HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: a.service.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .status();
    let what = if a.service.is_empty() {
        "paved"
    } else {
        &a.service
    };
    println!("{what}: {}", status.as_str_name());
    anyhow::ensure!(status == ServingStatus::Serving, "{what} is not serving");
    Ok(())
}
