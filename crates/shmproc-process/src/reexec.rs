//! Re-executing this program (`posix_spawn` of `/proc/self/exe`) in one of
//! the roles that `boot` intercepts before `main`, and the
//! `argv` strings that name those roles (written here, parsed there).
//!
//! Layer 1 (helper processes and re-exec): uses `session` and `error`.

use std::ffi::CString;
use std::os::fd::BorrowedFd;

use shmproc_shm::os::{self, Pid};

use crate::error::ProcessError;
use crate::session::ENV_SESSION;

/// What every role argument starts with; any other `argv[1]` runs `main`.
pub(crate) const ROLE_PREFIX: &str = "--shmproc-";
/// A `spawn` child: `--shmproc-child=<report fd>`.
pub(crate) const ROLE_CHILD: &str = "--shmproc-child=";
/// The fork server: `--shmproc-forkserver=<socket fd>`.
pub(crate) const ROLE_FORKSERVER: &str = "--shmproc-forkserver=";
/// The session tracker: `--shmproc-tracker=<root pid>:<tag, hex>`.
pub(crate) const ROLE_TRACKER: &str = "--shmproc-tracker=";

/// `posix_spawn` of `/proc/self/exe` with `argv = [argv0, arg]`, this
/// process's environment, and `keep` left open in the child.
pub(crate) fn spawn_self(arg: &str, keep: &[BorrowedFd<'_>]) -> Result<Pid, ProcessError> {
    use std::os::unix::ffi::OsStrExt;
    let argv0 = std::env::args_os()
        .next()
        .and_then(|a| CString::new(a.as_bytes()).ok())
        .unwrap_or_else(|| c"shmproc-child".to_owned());
    let arg = CString::new(arg).map_err(|_| ProcessError::args("argv", "NUL byte"))?;
    // The child's segments join this process's crash-cleanup session.
    let session = crate::session::known().map(|s| (ENV_SESSION, format!("{s:x}")));
    let env = env_block(session.as_ref().map(|(k, v)| (*k, v.as_str())));
    let env_refs: Vec<&std::ffi::CStr> = env.iter().map(CString::as_c_str).collect();
    os::spawn_exe(c"/proc/self/exe", &[&argv0, &arg], &env_refs, keep)
        .map_err(ProcessError::os("posix_spawn"))
}

/// This process's environment as `KEY=VALUE` C strings for `execve`, with
/// `set` (a key and its value) replacing any earlier value of that key.
pub(crate) fn env_block(set: Option<(&str, &str)>) -> Vec<CString> {
    use std::os::unix::ffi::OsStrExt;
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| set.is_none_or(|(key, _)| k != key))
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    if let Some((k, v)) = set {
        env.extend(CString::new(format!("{k}={v}")).ok());
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_starts_with_the_prefix() {
        for role in [ROLE_CHILD, ROLE_FORKSERVER, ROLE_TRACKER] {
            assert!(
                role.starts_with(ROLE_PREFIX) && role.ends_with('='),
                "{role}"
            );
        }
    }
}
