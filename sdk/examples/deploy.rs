//! Deploys a service's revision through Paved (and so Argo CD), follows it
//! to its outcome, then prints the owning team's DORA figures.
//!
//! ```text
//! PAVED_TOKEN=pvd_… cargo run -p paved-sdk --example deploy -- payments-api 4f2a9c1
//! ```

use std::time::Duration;

use paved_sdk::{Client, pb};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("PAVED_SERVER").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let token = std::env::var("PAVED_TOKEN")?;
    let mut args = std::env::args().skip(1);
    let (Some(service), Some(revision)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: deploy SERVICE REVISION");
    };
    let client = Client::connect(url, &token).await?;

    // A retry of this call (same request id) reaches the same deployment.
    let requested = client
        .request_deployment(pb::RequestDeploymentRequest {
            service: service.clone(),
            environment: "production".into(),
            revision,
            ..Default::default()
        })
        .await?;
    println!("deployment {} requested", requested.id);

    // Read at least our own write, then poll until the worker records the outcome.
    let reader = client.at(requested.sequence);
    let deployment = loop {
        let d = reader.get_deployment(&requested.id).await?;
        if d.status == "succeeded" || d.status == "failed" {
            break d;
        }
        println!("  {} {}", d.status, d.application);
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let outcome = deployment.outcome.unwrap_or_default();
    println!(
        "{}: {} / {} {}",
        deployment.status, outcome.phase, outcome.health, outcome.message
    );

    let owner = client.get_service(&service).await?.owner;
    let dora = client
        .dora(pb::GetDoraRequest {
            team: owner.clone(),
            window_days: 30,
            ..Default::default()
        })
        .await?;
    println!(
        "team {owner}, last 30 days: {:.2} deployments/day ({}), change failure rate {:?} ({})",
        dora.deployments_per_day,
        dora.frequency_level,
        dora.change_failure_rate,
        dora.change_failure_level
    );
    Ok(())
}
