//! The demo, and what the README promises after it: `warden up` in the demo's folder serves
//! the dashboard, which shows the rogue agent already contained.

mod support;

use support::up::start_until;
use support::{Setup, warden};

#[test]
fn after_the_demo_the_dashboard_shows_the_rogue_agent_contained() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, err) = warden(&["demo", "--dir", dir.path().to_str().unwrap()], dir.path());
    assert!(status.success(), "{out}\n{err}");
    assert!(out.contains("Contained ("), "{out}");
    assert!(out.contains("See it on the dashboard:"), "{out}");
    assert!(out.contains("user add me --role admin"), "{out}");
    assert!(out.contains("open http://127.0.0.1:7412/"), "{out}");

    // The printed steps, with the control plane on a free port so tests may run side by side.
    let config = dir.path().join("warden.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:7412\""), "{text}");
    std::fs::write(&config, text.replace("127.0.0.1:7412", "127.0.0.1:0")).unwrap();
    let (status, out, err) = warden(
        &[
            "user",
            "add",
            "me",
            "--role",
            "admin",
            "--config",
            config.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(status.success(), "{err}");
    let token = out
        .lines()
        .find(|l| l.starts_with("wdo_"))
        .unwrap()
        .to_owned();
    let up = start_until(
        Setup { dir },
        &["upstream \"files\" ready", "control plane ready"],
    );
    let get = |path: &str| up.control_get(path, &token);
    let page = get("/");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<title>"),
        "the dashboard's page: {}",
        page.body
    );
    let agents = get("/api/v1/agents");
    assert_eq!(agents.status, 200, "{}", agents.body);
    let agents = agents.json();
    let state = |name: &str| {
        agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .map(|a| a["state"].clone())
    };
    assert_eq!(state("alice"), Some("active".into()), "{agents}");
    assert_eq!(state("mallory"), Some("quarantined".into()), "{agents}");
    let alerts = get("/api/v1/alerts").json();
    assert_eq!(
        alerts["alerts"][0]["body"]["detector"], "denial_burst",
        "{alerts}"
    );
}
