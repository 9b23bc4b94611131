//! `paved`: a shim over [`paved::cli`].

/// mimalloc (its v2 line, which returns freed memory to the system after
/// 10 ms) rather than glibc's malloc. Commands, decoding and rendering
/// allocate per message; under glibc the allocator's share of the CPU grew
/// as its heap fragmented (a fifth early in a 300,000-command run, nearly
/// half late in it) and commands slowed from 22,000/s to 11,000/s.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    paved::cli::main().await
}
