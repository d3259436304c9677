//! `switchyard serve`: the service until SIGTERM or Ctrl-C, with the first
//! admin key created on an empty database and SIGHUP reloading the
//! configuration file and the HTTPS certificate.

use std::process::ExitCode;
use switchyard_core::Config;
use switchyard_server::keys::Bootstrap;
use switchyard_server::Application;

pub async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let admin_key = config.admin_api_key.clone();
    let config_preload = config.local_preload;
    let app = Application::build(config).await?;
    let state = app.state();
    match state.keys.bootstrap_admin(admin_key.as_ref()).await? {
        Bootstrap::NotNeeded => {}
        Bootstrap::Installed(key) => {
            tracing::info!(key_id = %key.id, prefix = %key.prefix, "installed ADMIN_API_KEY as the first admin key");
        }
        Bootstrap::Generated(issued) => {
            println!(
                "\n  Created the first admin API key. It is shown only this once; store it now:\n\n    {}\n\n  (id {}; manage keys with `switchyard keys --help`)\n",
                issued.secret.expose(),
                issued.key.id
            );
        }
    }
    if config_preload {
        state.gateway.preload_local();
    }
    spawn_reload_on_sighup(state, app.tls());
    app.run_until(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// SIGHUP re-reads `SWITCHYARD_CONFIG` and swaps in the new model catalog,
/// and re-reads `TLS_CERT_FILE`/`TLS_KEY_FILE` for new connections; an
/// invalid file is reported and what is running kept.
fn spawn_reload_on_sighup(
    state: switchyard_server::AppState,
    tls: Option<switchyard_server::tls::ReloadableCertificate>,
) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            if let Some(cert) = &tls {
                match cert.reload() {
                    Ok(_) => switchyard_server::app::report_certificate(cert),
                    Err(e) => {
                        tracing::error!(variable = e.variable(), error = %e, "TLS certificate reload rejected; still serving the previous certificate")
                    }
                }
            }
            let loaded = Config::from_env();
            if loaded.problems.is_empty() {
                let n = loaded.config.file.models.len();
                state.reload(&loaded.config);
                tracing::info!(models = n, "configuration reloaded");
            } else {
                for p in &loaded.problems {
                    tracing::error!(variable = %p.variable, problem = %p.message, "configuration reload rejected");
                }
            }
        }
    });
}
