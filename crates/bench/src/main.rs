//! `fake-upstream`: the benchmark upstream (see the library) on a port.
//!
//!   fake-upstream --port 9100 [--delay-ms 0]

use clap::Parser;
use std::time::Duration;

#[derive(Parser, Clone, Copy)]
#[command(about = "A minimal fake OpenAI upstream for load tests")]
struct Args {
    /// Port on 127.0.0.1 (0: any free one; the chosen port is printed).
    #[arg(long, default_value_t = 9100)]
    port: u16,
    /// Milliseconds to wait before answering.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let port = listener.local_addr()?.port();
    #[allow(clippy::print_stdout)]
    {
        println!("fake-upstream listening on 127.0.0.1:{port}");
    }
    axum::serve(
        listener,
        switchyard_bench::router(Duration::from_millis(args.delay_ms)),
    )
    .await
}
