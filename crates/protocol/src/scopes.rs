//! Operator scopes, how they imply one another, and which scope each
//! method needs. This is the single home of those rules.

pub const ADMIN: &str = "operator.admin";
pub const READ: &str = "operator.read";
pub const WRITE: &str = "operator.write";
pub const SESSIONS_READ: &str = "operator.sessions.read";
pub const SESSIONS_WRITE: &str = "operator.sessions.write";
pub const APPROVALS: &str = "operator.approvals";
pub const QUESTIONS: &str = "operator.questions";
pub const PAIRING: &str = "operator.pairing";
pub const TALK: &str = "operator.talk";
pub const TALK_SECRETS: &str = "operator.talk.secrets";

/// The closed set of operator scopes.
pub const OPERATOR_SCOPES: &[&str] = &[
    ADMIN,
    READ,
    WRITE,
    SESSIONS_READ,
    SESSIONS_WRITE,
    APPROVALS,
    QUESTIONS,
    PAIRING,
    TALK,
    TALK_SECRETS,
];

/// What the reference CLI asks for when it does not narrow per method.
pub const CLI_DEFAULT_SCOPES: &[&str] = &[
    ADMIN,
    READ,
    WRITE,
    APPROVALS,
    QUESTIONS,
    PAIRING,
    TALK_SECRETS,
];

/// Whether `scope` is one of the operator scopes.
pub fn is_operator_scope(scope: &str) -> bool {
    OPERATOR_SCOPES.contains(&scope)
}

/// Whether holding `held` grants `required`, following the implications:
/// admin grants everything; write grants read, talk and both session scopes;
/// read or sessions.write grant sessions.read.
pub fn scope_grants(held: &str, required: &str) -> bool {
    if held == required || held == ADMIN {
        return true;
    }
    match held {
        WRITE => matches!(required, READ | TALK | SESSIONS_READ | SESSIONS_WRITE),
        READ | SESSIONS_WRITE => required == SESSIONS_READ,
        _ => false,
    }
}

/// Whether any scope in `held` grants `required`.
pub fn satisfies<S: AsRef<str>>(held: &[S], required: &str) -> bool {
    held.iter().any(|h| scope_grants(h.as_ref(), required))
}

/// Whether every scope in `requested` is granted by `held`.
pub fn covers<S: AsRef<str>, T: AsRef<str>>(held: &[S], requested: &[T]) -> bool {
    requested.iter().all(|r| satisfies(held, r.as_ref()))
}

/// `requested` as the reference stores a token's scopes: `operator.admin`
/// adds `operator.read` and `operator.write`, `operator.write` adds
/// `operator.read`; sorted, without duplicates. (Narrower than
/// [`scope_grants`]: a token does not list every scope it grants.)
pub fn token_normalised<S: AsRef<str>>(requested: &[S]) -> Vec<&str> {
    let has = |scope: &str| requested.iter().any(|s| s.as_ref() == scope);
    let implied: &[&str] = if has(ADMIN) {
        &[READ, WRITE]
    } else if has(WRITE) {
        &[READ]
    } else {
        &[]
    };
    let mut out: Vec<&str> = requested
        .iter()
        .map(AsRef::as_ref)
        .chain(implied.iter().copied())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The first scope of `requested` that `held` does not grant.
pub fn first_uncovered<'a, S: AsRef<str>, T: AsRef<str>>(
    held: &[S],
    requested: &'a [T],
) -> Option<&'a str> {
    requested
        .iter()
        .map(AsRef::as_ref)
        .find(|r| !satisfies(held, r))
}

/// Methods only node-role clients may call.
pub const NODE_ONLY_METHODS: &[&str] = &[
    "skills.bins",
    "node.pluginSurface.refresh",
    "node.pluginTools.update",
    "node.skills.update",
    "node.runnerInventory.update",
    "node.pending.drain",
    "node.pending.pull",
    "node.pending.ack",
    "node.invoke.progress",
    "node.invoke.result",
    "node.event",
];

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodAccess {
    /// Any authenticated socket, whatever its role and scopes (`health`).
    Anyone,
    /// Node-role sockets only.
    NodeOnly,
    /// Operator sockets holding this scope (or one that grants it).
    Operator(&'static str),
}

/// The access rule for `method`. Methods without an entry need
/// `operator.admin`, as in the reference.
pub fn method_access(method: &str) -> MethodAccess {
    if method == "health" {
        return MethodAccess::Anyone;
    }
    if NODE_ONLY_METHODS.contains(&method) {
        return MethodAccess::NodeOnly;
    }
    let scope = match method {
        "status" | "last-heartbeat" | "system-presence" => READ,
        "device.scopes.requestUpgrade" | "device.scopes.waitUpgrade" => READ,
        m if m.starts_with("device.pair.") || m.starts_with("device.token.") => {
            if matches!(m, "device.pair.setupCode" | "device.pair.setupStatus") {
                ADMIN
            } else {
                PAIRING
            }
        }
        m if m.starts_with("node.pair.") => PAIRING,
        // clawgate's passkeys: registering one is approving future devices.
        m if m.starts_with("passkey.") => PAIRING,
        _ => ADMIN,
    };
    MethodAccess::Operator(scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implications() {
        assert!(satisfies(&[ADMIN], PAIRING));
        assert!(satisfies(&[WRITE], READ));
        assert!(satisfies(&[WRITE], SESSIONS_WRITE));
        assert!(satisfies(&[READ], SESSIONS_READ));
        assert!(satisfies(&[SESSIONS_WRITE], SESSIONS_READ));
        assert!(!satisfies(&[READ], WRITE));
        assert!(!satisfies(&[PAIRING], ADMIN));
        assert!(!satisfies::<&str>(&[], READ));
        assert!(covers(&[WRITE, PAIRING], &[READ, PAIRING]));
        assert_eq!(first_uncovered(&[READ], &[READ, PAIRING]), Some(PAIRING));
    }

    #[test]
    fn method_rules() {
        assert_eq!(method_access("health"), MethodAccess::Anyone);
        assert_eq!(method_access("status"), MethodAccess::Operator(READ));
        assert_eq!(
            method_access("device.pair.list"),
            MethodAccess::Operator(PAIRING)
        );
        assert_eq!(method_access("node.invoke.result"), MethodAccess::NodeOnly);
        assert_eq!(
            method_access("no.such.method"),
            MethodAccess::Operator(ADMIN)
        );
    }
}
