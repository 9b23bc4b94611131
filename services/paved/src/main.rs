//! `paved`: a shim over [`paved::cli`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    paved::cli::main().await
}
