//! The deployment examples in deploy/ parse, and every setting they use is
//! one `mtls serve` really has (checked against its own --help).

mod common;

use yaml_rust2::YamlLoader;

fn serve_help() -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = common::mtls_command(dir.path())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_kubernetes_manifests_parse_and_use_real_settings() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/kubernetes/mtls.yaml"
    ))
    .unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("valid YAML");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Certificate",
            "ConfigMap",
            "Secret",
            "Deployment",
            "Service"
        ]
    );

    let deployment = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("Deployment"))
        .unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let help = serve_help();
    let env = container["env"].as_vec().unwrap();
    assert!(!env.is_empty());
    for variable in env {
        let name = variable["name"].as_str().unwrap();
        assert!(
            help.contains(&format!("[env: {name}=")),
            "`{name}` is not a setting of mtls serve"
        );
    }
    // The probes use the admin endpoint's real paths.
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    // The image runs as the non-root user the Dockerfile sets.
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"].as_i64(), Some(10001));
    // Secret volumes hold keys: mtls serve refuses them world-readable, and
    // Kubernetes' default mode is 0644. The group (fsGroup) may read.
    let secrets: Vec<_> = pod["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .filter(|volume| !volume["secret"].is_badvalue())
        .collect();
    assert_eq!(secrets.len(), 2);
    assert!(pod["securityContext"]["fsGroup"].as_i64().is_some());
    for volume in secrets {
        let mode = volume["secret"]["defaultMode"].as_i64();
        assert!(
            mode.is_some_and(|mode| mode & 0o007 == 0 && mode & 0o040 != 0),
            "{volume:?}: defaultMode {mode:?} must give no access to others and read to the group"
        );
    }
}

#[test]
fn the_haproxy_example_sends_proxy_v2_to_flags_that_exist() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/haproxy/haproxy.cfg"
    ))
    .unwrap();
    let servers: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("server "))
        .collect();
    assert_eq!(servers.len(), 3);
    assert!(
        servers.iter().all(|s| s.contains("send-proxy-v2")),
        "{servers:?}"
    );
    let help = serve_help();
    for flag in [
        "--proxy-protocol",
        "--trusted-proxy",
        "--session-ticket-key-file",
        "--listen",
    ] {
        assert!(text.contains(flag), "the example mentions {flag}");
        assert!(help.contains(flag), "{flag} is a real flag");
    }
}
