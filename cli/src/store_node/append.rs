//! List-append commands of `store-node`, the client side of the Jepsen-style
//! workload (`tests/session_jepsen.rs`): each session holds a list of unique
//! numbers in attribute `list`; an append is a read-modify-write.
//!
//! ```text
//! append <id> <elem> -> ok base=<list> copies=<n>
//!                     | conflict base=<list> <why>     (definitely not applied)
//!                     | fail base=<list|-> <why>       (definitely not applied:
//!                                                       Unreachable, NotFound; Shutdown
//!                                                       before the commit was taken)
//!                     | info base=<list> <why>         (unknown: may be applied,
//!                                                       e.g. RemoteFailure, Timeout)
//! read <id>          -> list <list> | notfound | err <why>
//! holders <id>       -> holders <addr>...   (placement over the live members, primary first)
//! ```
//!
//! A list is written `[1,2,3]` (`[]` when empty). `base` is the list the
//! append read and built on; `-` when it failed before reading one.

use sessionrepl::session::{member_key, Placement, SessionStore, StoreLookup};
use sessionrepl::Error;
use std::time::Duration;

/// The attribute holding a session's list.
const LIST: &[u8] = b"list";
/// How long an append waits for its acknowledgement before it says `info`.
const ACK_WAIT: Duration = Duration::from_secs(10);

/// `[1,2,3]`.
fn show(list: &[u64]) -> String {
    let v: Vec<String> = list.iter().map(|e| e.to_string()).collect();
    format!("[{}]", v.join(","))
}

/// Parses the stored value of `list` (comma-separated numbers).
fn parse(stored: &[u8]) -> Result<Vec<u64>, String> {
    let s = std::str::from_utf8(stored).map_err(|_| "list is not UTF-8".to_string())?;
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|e| e.parse().map_err(|_| format!("bad element {e:?} in list")))
        .collect()
}

fn encode(list: &[u64]) -> Vec<u8> {
    let v: Vec<String> = list.iter().map(|e| e.to_string()).collect();
    v.join(",").into_bytes()
}

fn word(e: &Error) -> String {
    e.to_string().replace(char::is_whitespace, "_")
}

/// How a failed commit is reported, after docs/SESSIONS.md ("Failed and
/// timed-out commits"): a conflict, a definite failure (nothing applied
/// anywhere), or unknown (possibly applied, or still in flight).
/// `waited`: the error came from waiting for the ack, when the commit was
/// already taken (a pending handle failed by shutdown may still have been
/// applied and forwarded).
fn failure(e: &Error, base: &str, stage: &str, waited: bool) -> String {
    match e {
        Error::Conflict(_) => format!("conflict base={base} {stage}{}", word(e)),
        Error::Unreachable(_) | Error::NotFound => format!("fail base={base} {stage}{}", word(e)),
        Error::Shutdown | Error::NotRunning if !waited => {
            format!("fail base={base} {stage}{}", word(e))
        }
        _ => format!("info base={base} {stage}{}", word(e)),
    }
}

/// The outcome of waiting for an acknowledgement, as a reply line.
fn settle(h: sessionrepl::session::CommitHandle, base: &str) -> String {
    match h.wait(ACK_WAIT) {
        Ok(n) => format!("ok base={base} copies={n}"),
        Err(e) => failure(&e, base, "wait:", true),
    }
}

/// `append <id> <elem>`: read the list (fetching the session if needed),
/// commit it with `elem` appended on top of the version read, and wait.
pub fn append(store: &SessionStore, id: &str, elem: &str) -> String {
    let Ok(elem) = elem.parse::<u64>() else {
        return format!("err bad element {elem}");
    };
    let found = match store.get(id.as_bytes()) {
        Ok(StoreLookup::Local(s)) => Some(s),
        Ok(StoreLookup::NotFound) => None,
        Ok(StoreLookup::Moved(a)) => return format!("fail base=- moved_to_{a}"),
        Err(e) => return format!("fail base=- get:{}", word(&e)),
    };
    let Some(session) = found else {
        // Absent: create it holding [elem]; a concurrent create wins over us.
        let mut txn = store.begin(id.as_bytes().to_vec());
        txn.set(LIST.to_vec(), encode(&[elem]));
        return match store.create(txn) {
            Ok(h) => settle(h, "[]"),
            Err(e) => failure(&e, "[]", "create:", false),
        };
    };
    let mut list = match session.attribute(LIST).map(|v| parse(v)).transpose() {
        Ok(l) => l.unwrap_or_default(),
        Err(why) => return format!("err corrupt {id}: {why}"),
    };
    let base = show(&list);
    list.push(elem);
    let mut txn = store.begin(id.as_bytes().to_vec());
    txn.set_base(session.version());
    txn.set(LIST.to_vec(), encode(&list));
    match store.commit(txn) {
        Ok(h) => settle(h, &base),
        Err(e) => failure(&e, &base, "commit:", false),
    }
}

/// `read <id>`: the session's list as `get` finds it.
pub fn read(store: &SessionStore, id: &str) -> String {
    match store.get(id.as_bytes()) {
        Ok(StoreLookup::Local(s)) => match s.attribute(LIST).map(|v| parse(v)).transpose() {
            Ok(l) => format!("list {}", show(&l.unwrap_or_default())),
            Err(why) => format!("err corrupt {id}: {why}"),
        },
        Ok(StoreLookup::NotFound) => "notfound".into(),
        Ok(StoreLookup::Moved(a)) => format!("err moved_to_{a}"),
        Err(e) => format!("err {}", word(&e)),
    }
}

/// `holders <id>`: who placement says holds `id` among the members this
/// node sees (itself included), primary first.
pub fn holders(store: &SessionStore, id: &str, copies: usize) -> String {
    let mut live: Vec<_> = store.members().into_iter().map(member_key).collect();
    live.push(store.me());
    let h = Placement::holders(id.as_bytes(), &live, copies);
    let v: Vec<String> = h.as_slice().iter().map(|m| m.addr.to_string()).collect();
    format!("holders {}", v.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse(&encode(&[])).unwrap(), Vec::<u64>::new());
        assert_eq!(parse(&encode(&[1, 22, 333])).unwrap(), vec![1, 22, 333]);
        assert_eq!(show(&[1, 2]), "[1,2]");
        assert_eq!(show(&[]), "[]");
        assert!(parse(b"1,x").is_err());
        assert!(parse(&[0xff]).is_err());
    }
}
