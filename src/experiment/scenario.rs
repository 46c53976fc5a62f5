//! The scenario matrix of the original study: host load, guest load, and zero, one or two
//! guests, crossed so that each effect can be seen on its own and together.

use serde::Serialize;

use crate::record::UsageError;

/// One cell of the matrix: how many guests run, and where load is played.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scenario {
    /// Short name, also the scenario's folder (`guest-load`).
    pub name: String,
    /// What it is, in words (`load in the guest`).
    pub title: String,
    /// Guests booted (named `vm1`, `vm2`).
    pub guests: usize,
    /// Whether the host plays load while it runs.
    pub host_load: bool,
    /// Whether every guest plays load inside.
    pub guest_load: bool,
}

impl Scenario {
    fn new(name: &str, title: &str, guests: usize, host_load: bool, guest_load: bool) -> Self {
        Scenario {
            name: name.to_string(),
            title: title.to_string(),
            guests,
            host_load,
            guest_load,
        }
    }

    /// The guests' names, `vm1` … `vmN`.
    pub fn guest_names(&self) -> Vec<String> {
        (1..=self.guests).map(|i| format!("vm{i}")).collect()
    }
}

/// The ten scenarios, in the order they run: host alone (idle, loaded), one guest (idle,
/// idle under host load, loaded, both loaded), and the four guest scenarios with two guests.
pub fn matrix() -> Vec<Scenario> {
    vec![
        Scenario::new("host-idle", "host idle, no guest", 0, false, false),
        Scenario::new(
            "host-load",
            "load on the host only, no guest",
            0,
            true,
            false,
        ),
        Scenario::new("guest-idle", "one idle guest", 1, false, false),
        Scenario::new(
            "host-load-guest-idle",
            "load on the host, one idle guest",
            1,
            true,
            false,
        ),
        Scenario::new("guest-load", "load in one guest", 1, false, true),
        Scenario::new(
            "both-load",
            "load on the host and in one guest",
            1,
            true,
            true,
        ),
        Scenario::new("two-guests-idle", "two idle guests", 2, false, false),
        Scenario::new(
            "two-guests-host-load",
            "load on the host, two idle guests",
            2,
            true,
            false,
        ),
        Scenario::new("two-guests-load", "load in both guests", 2, false, true),
        Scenario::new(
            "two-guests-both-load",
            "load on the host and in both guests",
            2,
            true,
            true,
        ),
    ]
}

/// The scenarios named in `list` (comma-separated names, `all`, `one-guest` for the host
/// and one-guest rows, or `two-guests`), in the matrix's order, each once.
pub fn select(list: &str) -> Result<Vec<Scenario>, UsageError> {
    let all = matrix();
    let mut wanted = vec![false; all.len()];
    for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word {
            "all" => wanted.iter_mut().for_each(|w| *w = true),
            "one-guest" => {
                for (w, s) in wanted.iter_mut().zip(&all) {
                    *w |= s.guests <= 1;
                }
            }
            "two-guests" => {
                for (w, s) in wanted.iter_mut().zip(&all) {
                    *w |= s.guests == 2;
                }
            }
            name => match all.iter().position(|s| s.name == name) {
                Some(i) => wanted[i] = true,
                None => {
                    let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
                    return Err(UsageError(format!(
                        "no scenario '{name}'; the scenarios are: {} (or all, one-guest, \
                         two-guests)",
                        names.join(", ")
                    )));
                }
            },
        }
    }
    let chosen: Vec<Scenario> = all
        .into_iter()
        .zip(wanted)
        .filter_map(|(s, w)| w.then_some(s))
        .collect();
    if chosen.is_empty() {
        return Err(UsageError("--scenarios names no scenario".into()));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_crosses_host_load_guest_load_and_guest_count() {
        let m = matrix();
        assert_eq!(m.len(), 10);
        // Every combination of host load and guest load for one and for two guests, and
        // the host alone idle and loaded; no duplicates.
        for guests in [1, 2] {
            for host in [false, true] {
                for guest in [false, true] {
                    let n = m
                        .iter()
                        .filter(|s| s.guests == guests && s.host_load == host)
                        .filter(|s| s.guest_load == guest)
                        .count();
                    assert_eq!(n, 1, "{guests} guests, host {host}, guest {guest}");
                }
            }
        }
        assert_eq!(m.iter().filter(|s| s.guests == 0).count(), 2);
        assert!(m.iter().all(|s| s.guests > 0 || !s.guest_load));
    }

    #[test]
    fn selection_keeps_matrix_order_and_rejects_unknown_names() {
        let s = select("guest-load, host-idle,guest-load").unwrap();
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["host-idle", "guest-load"]);
        assert_eq!(select("all").unwrap().len(), 10);
        assert_eq!(select("one-guest").unwrap().len(), 6);
        assert_eq!(select("two-guests").unwrap().len(), 4);
        let e = select("guest-lod").unwrap_err().0;
        assert!(e.contains("guest-lod") && e.contains("guest-load"), "{e}");
        assert!(select(" , ").is_err());
        assert_eq!(
            select("two-guests-load").unwrap()[0].guest_names(),
            ["vm1", "vm2"]
        );
    }
}
