//! The cache against a fake CA that blocks like the servers do: leaves are issued once roots
//! exist, renewed on schedule and on rotation, and every new certificate moves the index.
//! Paused tokio time: a 72 h lifetime passes instantly.

use std::sync::atomic::Ordering;

use concord_api::connect::IssuedCert;
use time::format_description::well_known::Rfc3339;

use super::fake::FakeCa;
use super::*;

async fn next_cert(rx: &mut watch::Receiver<LeafView>, above: u64) -> IssuedCert {
    rx.wait_for(|v| v.cert.as_ref().is_some_and(|c| c.modify_index > above))
        .await
        .unwrap()
        .cert
        .clone()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn issues_once_roots_exist_then_renews_on_schedule_and_on_rotation() {
    let fake = FakeCa::new();
    let ca = ConnectCa::new(fake.clone(), "dc1".into());
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let runner = tokio::spawn(ca.clone().run(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));

    tracing::info!("no CA yet: nothing is signed");
    let mut leaf = ca.leaf("web");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fake.signed.load(Ordering::SeqCst), 0);

    tracing::info!("the CA appears: the agent makes a key and a CSR and gets it signed");
    fake.set_active(5, "root-1");
    let first = next_cert(&mut leaf, 0).await;
    assert_eq!(first.modify_index, 5);
    assert!(
        first.private_key_pem.contains("PRIVATE KEY"),
        "the agent's key"
    );
    {
        let csrs = fake.csrs.lock().unwrap();
        assert_eq!(csrs[0].service, "web");
        assert!(csrs[0].csr_pem.contains("CERTIFICATE REQUEST"));
        assert!(!csrs[0].csr_pem.contains("PRIVATE"), "the key stays here");
    }

    tracing::info!("a second caller shares the cached leaf");
    let again = ca.leaf("web");
    assert_eq!(
        again.borrow().cert.as_ref().unwrap().serial_number,
        first.serial_number
    );
    assert_eq!(fake.signed.load(Ordering::SeqCst), 1);

    tracing::info!("scheduled renewal: between 60% and 90% of 72 h, with a new index");
    let start = tokio::time::Instant::now();
    let renewed = next_cert(&mut leaf, first.modify_index).await;
    let waited = start.elapsed().as_secs_f64() / 3600.0;
    assert!((43.0..=65.0).contains(&waited), "renewed after {waited} h");
    assert_ne!(renewed.serial_number, first.serial_number);
    assert_eq!(
        renewed.modify_index,
        first.modify_index + 1,
        "same roots index, still moves"
    );

    tracing::info!("rotation: a new active root renews at once");
    let before = tokio::time::Instant::now();
    fake.set_active(9, "root-2");
    let rotated = next_cert(&mut leaf, renewed.modify_index).await;
    assert!(before.elapsed() < Duration::from_secs(60));
    assert_eq!(rotated.modify_index, 9);
    assert_eq!(fake.signed.load(Ordering::SeqCst), 3);

    tracing::info!("roots are cached too, at the servers' index");
    assert_eq!(ca.roots().borrow().as_ref().unwrap().meta.index, 9);

    stop_tx.send_replace(true);
    runner.await.unwrap();
    assert!(ca.lock().is_empty(), "stopping ends every leaf task");
}

#[test]
fn renews_between_60_and_90_percent_of_the_lifetime() {
    let now = time::OffsetDateTime::now_utc();
    let cert = |after: time::OffsetDateTime, before: time::OffsetDateTime| IssuedCert {
        valid_after: after.format(&Rfc3339).unwrap(),
        valid_before: before.format(&Rfc3339).unwrap(),
        ..IssuedCert::default()
    };
    let c = cert(now, now + time::Duration::hours(72));
    let early = renew_delay(&c, 0.6).as_secs_f64() / 3600.0;
    let late = renew_delay(&c, 0.9).as_secs_f64() / 3600.0;
    assert!((43.1..43.3).contains(&early), "{early}");
    assert!((64.7..64.9).contains(&late), "{late}");
    // Past the renewal point: renew now (but not in a hot loop).
    let old = cert(
        now - time::Duration::hours(80),
        now + time::Duration::hours(1),
    );
    assert_eq!(renew_delay(&old, 0.6), MIN_RENEW);
    assert_eq!(renew_delay(&IssuedCert::default(), 0.6), MIN_RENEW);
}

#[test]
fn csr_names_only_the_identity() {
    let uri = "spiffe://x.consul/ns/default/dc/dc1/svc/web";
    let (key, csr) = make_csr(uri).unwrap();
    assert!(key.contains("PRIVATE KEY"));
    assert!(csr.contains("CERTIFICATE REQUEST"));
    assert!(make_csr("spiffe://caf\u{e9}").is_err());
}
