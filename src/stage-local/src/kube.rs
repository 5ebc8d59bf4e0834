//! `--kube FILE`: the image as Kubernetes objects that `kubectl apply` and `podman kube
//! play` both take: a Secret holding VCAP_SERVICES, a Deployment of one replica whose
//! container runs the image's entrypoint for `web` (the app and its sidecars), with the
//! app's port, a readiness probe on it (Diego's port health check) and the staged memory
//! as its limit, and a Service for the port. Written beside FILE and renamed into place.

use anyhow::Context as _;
use serde_json::json;
use std::path::Path;

/// What the objects need to know.
pub(crate) struct Kube<'a> {
    /// The app's name: the objects' names and their `app` label.
    pub app: &'a str,
    pub image: &'a str,
    pub port: u16,
    /// The web process's memory (its sidecars' included), in MB.
    pub memory_mb: u64,
    pub vcap_services: &'a str,
    /// Between SIGTERM and SIGKILL, as the entrypoint's own grace period.
    pub grace_seconds: u64,
}

impl Kube<'_> {
    /// The YAML documents.
    pub(crate) fn yaml(&self) -> String {
        let name = object_name(self.app);
        let labels = json!({ "app": name });
        let secret = format!("{name}-vcap-services");
        let objects = [
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret, "labels": labels},
                "type": "Opaque",
                "stringData": {"VCAP_SERVICES": self.vcap_services},
            }),
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            // The entrypoint's own grace period, plus time to report.
                            "terminationGracePeriodSeconds": self.grace_seconds + 5,
                            "containers": [{
                                "name": name,
                                "image": self.image,
                                "imagePullPolicy": "IfNotPresent",
                                "args": ["--grace-period", self.grace_seconds.to_string(), "web"],
                                "ports": [{"name": "http", "containerPort": self.port, "protocol": "TCP"}],
                                "env": [{
                                    "name": "VCAP_SERVICES",
                                    // Optional: podman 4.3 (Debian 12) stores a Secret of the
                                    // file in a form its own secretKeyRef cannot read; it then
                                    // keeps the image's VCAP_SERVICES, the same value.
                                    "valueFrom": {"secretKeyRef": {
                                        "name": secret, "key": "VCAP_SERVICES", "optional": true,
                                    }},
                                }],
                                "readinessProbe": {
                                    "httpGet": {"path": "/", "port": self.port},
                                    "periodSeconds": 5,
                                    "timeoutSeconds": 5,
                                },
                                "resources": {"limits": {"memory": format!("{}Mi", self.memory_mb)}},
                            }],
                        },
                    },
                },
            }),
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "selector": labels,
                    "ports": [{"name": "http", "port": self.port, "targetPort": self.port, "protocol": "TCP"}],
                },
            }),
        ];
        objects
            .iter()
            .map(|o| serde_yaml::to_string(o).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("---\n")
    }

    pub(crate) fn write(&self, file: &Path) -> anyhow::Result<()> {
        let dir = file.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".kube")
            .suffix(".partial")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        std::io::Write::write_all(&mut tmp, self.yaml().as_bytes())?;
        tmp.persist(file)
            .with_context(|| format!("cannot write {}", file.display()))?;
        Ok(())
    }
}

/// A Kubernetes object name (RFC 1123 label): lowercase alphanumerics and `-`.
fn object_name(app: &str) -> String {
    let name: String = app
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "app".into()
    } else {
        name.chars().take(63).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_objects_carry_the_port_probe_memory_and_secret() {
        let k = Kube {
            app: "My_App",
            image: "localhost/my-app:latest",
            port: 8080,
            memory_mb: 256,
            vcap_services: "{\"x\":[]}",
            grace_seconds: 10,
        };
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&k.yaml())
            .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
            .collect();
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(kinds, ["Secret", "Deployment", "Service"]);
        assert_eq!(
            docs[0]["stringData"]["VCAP_SERVICES"].as_str(),
            Some("{\"x\":[]}")
        );
        let c = &docs[1]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["name"].as_str(), Some("my-app"));
        assert_eq!(c["image"].as_str(), Some("localhost/my-app:latest"));
        assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(8080));
        assert_eq!(c["readinessProbe"]["httpGet"]["port"].as_u64(), Some(8080));
        assert_eq!(c["resources"]["limits"]["memory"].as_str(), Some("256Mi"));
        assert_eq!(
            c["env"][0]["valueFrom"]["secretKeyRef"]["name"].as_str(),
            Some("my-app-vcap-services")
        );
        assert_eq!(
            docs[2]["spec"]["ports"][0]["targetPort"].as_u64(),
            Some(8080)
        );
    }
}
