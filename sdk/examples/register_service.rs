//! Registers a team and a service, then reads the service back.
//!
//! ```text
//! PAVED_TOKEN=pvd_… cargo run -p paved-sdk --example register_service
//! ```

use paved_sdk::{Client, pb};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("PAVED_SERVER").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let token = std::env::var("PAVED_TOKEN")?;
    let client = Client::connect(url, &token).await?;

    // ALREADY_EXISTS on a second run is fine: the team is there.
    match client
        .create_team(pb::CreateTeamRequest {
            name: "payments".into(),
            profile: Some(pb::TeamProfile {
                display_name: "Payments".into(),
                email: "payments@example.com".into(),
                chat_channel: "#payments".into(),
            }),
            ..Default::default()
        })
        .await
    {
        Ok(_) => {}
        Err(e) if e.code() == tonic::Code::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }

    let done = client
        .register_service(pb::RegisterServiceRequest {
            name: format!("payments-api-{}", std::process::id()),
            owner: "payments".into(),
            spec: Some(pb::ServiceSpec {
                r#type: pb::ServiceType::Service.into(),
                lifecycle: pb::Lifecycle::Production.into(),
                description: "Takes the money".into(),
                docs_url: "https://docs.example.com/payments-api".into(),
                tags: vec!["rust".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    println!("appended at sequence {}", done.sequence);

    // Read your write.
    let list = client
        .at(done.sequence)
        .list_services(pb::ListServicesRequest {
            owner: "payments".into(),
            ..Default::default()
        })
        .await?;
    for s in list.services {
        println!("{} (owner {})", s.name, s.owner);
    }
    Ok(())
}
