//! Screening cannot starve the rest of the server: with the matching pool
//! saturated by `BatchScreen` streams of long names from several callers,
//! health checks and `CheckProcessing` still answer promptly.

use std::time::{Duration, Instant};

use proctor::proto::v1 as pb;
use tonic_health::pb::HealthCheckRequest;

use crate::on_both_backends;
use crate::screening::import;
use crate::support::{Backend, TestApp, authed, spawn_app};

/// Tokens the synthetic list and the queries share, so that every query
/// name has many candidates to score.
const TOKENS: &[&str] = &[
    "AHMAD",
    "MOHAMMED",
    "ALI",
    "HASSAN",
    "HUSSEIN",
    "ABDUL",
    "KARIM",
    "RAHMAN",
    "YUSUF",
    "IBRAHIM",
    "OMAR",
    "KHALID",
    "SAID",
    "MAHMOUD",
    "MUSTAFA",
    "SALEH",
    "NASSER",
    "JAMAL",
    "FAROUK",
    "TARIQ",
    "IVANOV",
    "PETROV",
    "SMIRNOV",
    "VOLKOV",
    "POPOV",
    "SOKOLOV",
    "LEBEDEV",
    "KOZLOV",
    "NOVIKOV",
    "MOROZOV",
    "TRADING",
    "GROUP",
    "HOLDING",
    "SHIPPING",
    "INTERNATIONAL",
    "COMPANY",
    "LIMITED",
];

/// A deterministic CSL list of `n` entries of four shared tokens each.
pub(crate) fn synthetic_csl(n: usize) -> Vec<u8> {
    let mut out = String::from("_id,source,entity_number,type,programs,name,alt_names\n");
    let mut x: u64 = 0x9e37_79b9;
    let mut next = || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        TOKENS[(x >> 33) as usize % TOKENS.len()]
    };
    for i in 0..n {
        let name = format!("{} {} {} {}", next(), next(), next(), next());
        let alt = format!("{} {} {}", next(), next(), next());
        out.push_str(&format!("id-{i},SDN,{i},Individual,SDGT,{name},{alt}\n"));
    }
    out.into_bytes()
}

/// A long query: a long name and the most aliases a request takes.
fn long_query(i: usize) -> pb::ScreenRequest {
    let words = |k: usize| {
        (0..40)
            .map(|j| TOKENS[(i * 7 + k * 13 + j * 3) % TOKENS.len()])
            .collect::<Vec<_>>()
            .join(" ")
    };
    pb::ScreenRequest {
        party: Some(pb::Party {
            name: words(0),
            aliases: (1..=50).map(words).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Time of one health check and one `CheckProcessing`, each of which must
/// succeed.
async fn probe(app: &TestApp) -> (Duration, Duration) {
    let t = Instant::now();
    let health = app
        .health()
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers")
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");
    let health_took = t.elapsed();
    let t = Instant::now();
    app.instructions()
        .check_processing(authed(
            pb::CheckProcessingRequest {
                tenant_id: "t1".into(),
                category: "contact".into(),
                purpose: "service_delivery".into(),
                region: "DE".into(),
                ..Default::default()
            },
            &app.keys.platform("recorder"),
        ))
        .await
        .expect("CheckProcessing answers");
    (health_took, t.elapsed())
}

async fn decisions_stay_fast_while_screening_is_saturated(b: Backend) {
    let app = spawn_app(b).await;
    import(
        &app,
        "us_csl",
        vec![("csl.csv".into(), synthetic_csl(3000))],
        &app.keys.compliance(),
    )
    .await
    .expect("the synthetic list imports");
    let (idle_health, idle_check) = probe(&app).await;

    // Four callers, one stream of long queries each.
    let mut streams = Vec::new();
    for s in 0..4 {
        let token = app.keys.platform(&format!("bulk-{s}"));
        let reqs: Vec<pb::ScreenRequest> = (0..200).map(|i| long_query(s * 1000 + i)).collect();
        // Each caller on its own connection, as separate clients are: on
        // one connection their unread requests would hold the HTTP/2
        // window the probes need.
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let out = proctor::proto::v1::screening_service_client::ScreeningServiceClient::new(channel)
            .batch_screen(authed(tokio_stream::iter(reqs), &token))
            .await
            .expect("the stream opens")
            .into_inner();
        streams.push(tokio::spawn(async move {
            let mut out = out;
            let mut n = 0usize;
            while let Ok(Some(_)) = out.message().await {
                n += 1;
            }
            n
        }));
    }
    // Let the streams fill the pool, then probe while they run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut worst = (Duration::ZERO, Duration::ZERO);
    for _ in 0..10 {
        let (h, c) = probe(&app).await;
        worst = (worst.0.max(h), worst.1.max(c));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "idle: health {idle_health:?}, check {idle_check:?}; saturated worst: health {:?}, check {:?}",
        worst.0, worst.1
    );
    assert!(
        worst.0 < Duration::from_secs(1),
        "health took {:?} while screening",
        worst.0
    );
    assert!(
        worst.1 < Duration::from_secs(1),
        "CheckProcessing took {:?} while screening",
        worst.1
    );
    assert!(
        streams.iter().all(|s| !s.is_finished()),
        "screening was still saturated while probing (else the probes prove nothing)"
    );
    for s in streams {
        s.abort();
    }
    app.stop().await;
}
on_both_backends!(
    decisions_stay_fast_while_screening_is_saturated,
    decisions_stay_fast_while_screening_is_saturated
);
