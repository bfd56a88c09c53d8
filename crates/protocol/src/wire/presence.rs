//! Presence entries (`system-presence`, `snapshot.presence`, the `presence`
//! event): the gateway's own entry first, then connected clients.

use serde::{Deserialize, Serialize};

use super::Extra;
use crate::connect::Role;

/// One presence entry. The gateway's own entry and a client's have
/// different fields (and field order), so they are two shapes; a JSON entry
/// with a `clientId` is a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PresenceEntry {
    Client(ClientPresence),
    Gateway(GatewayPresence),
}

impl PresenceEntry {
    pub fn host(&self) -> &str {
        match self {
            PresenceEntry::Client(c) => &c.host,
            PresenceEntry::Gateway(g) => &g.host,
        }
    }

    pub fn mode(&self) -> &str {
        match self {
            PresenceEntry::Client(c) => &c.mode,
            PresenceEntry::Gateway(g) => &g.mode,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            PresenceEntry::Client(c) => &c.reason,
            PresenceEntry::Gateway(g) => &g.reason,
        }
    }

    pub fn text(&self) -> &str {
        match self {
            PresenceEntry::Client(c) => &c.text,
            PresenceEntry::Gateway(g) => &g.text,
        }
    }

    pub fn ts(&self) -> u64 {
        match self {
            PresenceEntry::Client(c) => c.ts,
            PresenceEntry::Gateway(g) => g.ts,
        }
    }
}

impl From<ClientPresence> for PresenceEntry {
    fn from(c: ClientPresence) -> Self {
        PresenceEntry::Client(c)
    }
}

impl From<GatewayPresence> for PresenceEntry {
    fn from(g: GatewayPresence) -> Self {
        PresenceEntry::Gateway(g)
    }
}

/// The gateway's own entry (`mode: "gateway"`, `reason: "self"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPresence {
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub platform: String,
    /// The host's OS family as the reference names it ("Linux", "Mac").
    #[serde(default)]
    pub device_family: String,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub ts: u64,
    /// The host's primary address, when it has a route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(flatten, default)]
    pub extra: Extra,
}

impl GatewayPresence {
    /// `version` is the OpenClaw version clawgate is compatible with;
    /// `build_version` is clawgate's own (it appears in `text`).
    /// Set `device_family` and, with [`GatewayPresence::with_ip`], the
    /// address directly.
    pub fn new(
        host: &str,
        version: &str,
        build_version: &str,
        platform: &str,
        instance_id: &str,
        ts: u64,
    ) -> Self {
        GatewayPresence {
            host: host.to_string(),
            version: version.to_string(),
            platform: platform.to_string(),
            device_family: String::new(),
            mode: "gateway".into(),
            reason: "self".into(),
            instance_id: instance_id.to_string(),
            text: format!(
                "Gateway: {host} · clawgate {build_version} · mode gateway · reason self"
            ),
            ts,
            ip: None,
            extra: Extra::new(),
        }
    }

    /// The entry with the host's address, also shown in `text` as the
    /// reference shows it ("Gateway: host (ip) · ...").
    pub fn with_ip(mut self, ip: &str) -> Self {
        let at = format!("Gateway: {} ({ip})", self.host);
        self.text = self
            .text
            .replacen(&format!("Gateway: {}", self.host), &at, 1);
        self.ip = Some(ip.to_string());
        self
    }
}

/// A connected client's entry (`reason: "connect"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientPresence {
    pub client_id: String,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The session's scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The display name, else the client id.
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub platform: String,
    #[serde(default)]
    pub online_since: u64,
    #[serde(default)]
    pub ts: u64,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(flatten, default)]
    pub extra: Extra,
}

impl ClientPresence {
    /// The entry of a client that connected at `connected_at_ms`; `host`
    /// and `text` come from the display name (else the client id). Set
    /// `device_family`, `instance_id` and `device_id` directly.
    pub fn new(
        client_id: &str,
        mode: &str,
        role: Role,
        display_name: Option<&str>,
        version: &str,
        platform: &str,
        connected_at_ms: u64,
    ) -> Self {
        let host = display_name.unwrap_or(client_id);
        let kind = if role == Role::Node { "Node" } else { "Client" };
        ClientPresence {
            client_id: client_id.to_string(),
            mode: mode.to_string(),
            roles: vec![role.as_str().to_string()],
            scopes: Vec::new(),
            host: host.to_string(),
            version: version.to_string(),
            platform: platform.to_string(),
            online_since: connected_at_ms,
            ts: connected_at_ms,
            reason: "connect".into(),
            text: format!("{kind}: {host} · mode {mode}"),
            device_family: None,
            model_identifier: None,
            instance_id: None,
            device_id: None,
            extra: Extra::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    #[test]
    fn gateway_entry_shape() {
        let mut entry = GatewayPresence::new("vm", "2026.9.6", "0.1.0", "linux", "i-1", 5);
        entry.device_family = "Linux".into();
        let g = PresenceEntry::from(entry.clone());
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(
            v,
            json!({"host": "vm", "version": "2026.9.6", "platform": "linux", "deviceFamily": "Linux",
                   "mode": "gateway", "reason": "self", "instanceId": "i-1",
                   "text": "Gateway: vm · clawgate 0.1.0 · mode gateway · reason self", "ts": 5})
        );
        assert_eq!(
            keys(&v),
            [
                "host",
                "version",
                "platform",
                "deviceFamily",
                "mode",
                "reason",
                "instanceId",
                "text",
                "ts"
            ]
        );
        let with_ip = serde_json::to_value(entry.with_ip("192.0.2.10")).unwrap();
        assert_eq!(
            with_ip["text"],
            "Gateway: vm (192.0.2.10) · clawgate 0.1.0 · mode gateway · reason self"
        );
        assert_eq!(keys(&with_ip).last(), Some(&"ip"));
        assert_eq!(serde_json::from_value::<PresenceEntry>(v).unwrap(), g);
    }

    #[test]
    fn client_entry_shape() {
        let mut c = ClientPresence::new(
            "openclaw-control-ui",
            "webchat",
            Role::Operator,
            None,
            "1.0",
            "web",
            7,
        );
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            keys(&v),
            [
                "clientId",
                "mode",
                "roles",
                "scopes",
                "host",
                "version",
                "platform",
                "onlineSince",
                "ts",
                "reason",
                "text"
            ]
        );
        assert_eq!(v["text"], "Client: openclaw-control-ui · mode webchat");
        c = ClientPresence::new("node-host", "node", Role::Node, Some("Pi"), "1", "linux", 7);
        c.device_family = Some("pi".into());
        c.instance_id = Some("i".into());
        c.device_id = Some("d".into());
        let v = serde_json::to_value(PresenceEntry::from(c.clone())).unwrap();
        assert_eq!(v["text"], "Node: Pi · mode node");
        assert_eq!(v["host"], "Pi");
        assert_eq!(keys(&v)[11..], ["deviceFamily", "instanceId", "deviceId"]);
        assert_eq!(
            serde_json::from_value::<PresenceEntry>(v).unwrap(),
            PresenceEntry::Client(c)
        );
    }
}
