//! How a real process stops: rolling updates must not drop requests.

use std::time::{Duration, Instant};

use crate::process::ServeProcess;

#[tokio::test]
async fn after_sigterm_it_reports_not_ready_but_keeps_serving_for_the_shutdown_delay() {
    let mut shop = ServeProcess::start(&[("BAZAAR__SERVER__SHUTDOWN_DELAY_SECS", "2")]).await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{}{path}", shop.address)).send();
    assert_eq!(get("/health/ready").await.expect("ready").status(), 200);

    let signalled = Instant::now();
    shop.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = get("/health/ready").await.expect("still listening during the delay");
    assert_eq!(ready.status(), 503, "not ready once stopping");
    assert_eq!(get("/products").await.expect("still serving").status(), 200);
    assert_eq!(get("/health/live").await.expect("still serving").status(), 200);

    let status = tokio::time::timeout(Duration::from_secs(20), shop.child.wait()).await.expect("stops").expect("waits");
    assert!(status.success(), "{status:?}");
    assert!(signalled.elapsed() >= Duration::from_secs(2), "stopped only after the delay: {:?}", signalled.elapsed());
    let mut logs = Vec::new();
    while let Ok(Some(line)) = shop.logs.next_line().await {
        logs.push(line);
    }
    assert!(logs.iter().any(|l| l.contains("not ready, still serving")), "{logs:?}");
}
