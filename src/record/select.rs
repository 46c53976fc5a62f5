//! Which block devices and network interfaces a recording includes.

/// Include/exclude patterns for device and interface names (`*` and `?` wildcards).
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    /// If non-empty, only names matching one of these (an explicit name overrides the
    /// default exclusion of loop and ram devices and of partitions).
    pub include: Vec<String>,
    /// Names matching one of these are left out.
    pub exclude: Vec<String>,
    /// Record partitions as well as whole disks.
    pub partitions: bool,
}

/// Block devices left out unless named: they mirror other storage or are memory.
const DEFAULT_EXCLUDED_DISKS: [&str; 2] = ["loop*", "ram*"];

impl DeviceFilter {
    /// Whether to record block device `name` (`whole`: it is a disk, not a partition).
    pub fn wants_disk(&self, name: &str, whole: bool) -> bool {
        if self.excluded(name) {
            return false;
        }
        if !self.include.is_empty() {
            return self.included(name);
        }
        if DEFAULT_EXCLUDED_DISKS.iter().any(|p| wildcard(p, name)) {
            return false;
        }
        whole || self.partitions
    }

    /// Whether to record network interface `name`.
    pub fn wants_interface(&self, name: &str) -> bool {
        !self.excluded(name) && (self.include.is_empty() || self.included(name))
    }

    fn included(&self, name: &str) -> bool {
        self.include.iter().any(|p| wildcard(p, name))
    }

    fn excluded(&self, name: &str) -> bool {
        self.exclude.iter().any(|p| wildcard(p, name))
    }
}

/// Shell-style match of `*` (any run) and `?` (one character); device names need no more.
pub fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                backtrack = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match backtrack {
                Some((bp, bn)) => {
                    pi = bp + 1;
                    ni = bn + 1;
                    backtrack = Some((bp, bn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("sd*", "sda"));
        assert!(wildcard("*", ""));
        assert!(wildcard("e?h0", "eth0"));
        assert!(wildcard("*a*b", "xxaxxb"));
        assert!(!wildcard("sd*", "vda"));
        assert!(!wildcard("eth0", "eth01"));
        assert!(!wildcard("a*b", "a"));
    }

    #[test]
    fn default_disk_policy() {
        let f = DeviceFilter::default();
        assert!(f.wants_disk("vda", true));
        assert!(!f.wants_disk("vda1", false));
        assert!(!f.wants_disk("loop0", true));
        assert!(!f.wants_disk("ram0", true));
        let named = DeviceFilter {
            include: vec!["loop0".into(), "vda1".into()],
            ..Default::default()
        };
        assert!(named.wants_disk("loop0", true));
        assert!(named.wants_disk("vda1", false));
        assert!(!named.wants_disk("vda", true));
        let ex = DeviceFilter {
            exclude: vec!["lo".into()],
            partitions: true,
            ..Default::default()
        };
        assert!(!ex.wants_interface("lo"));
        assert!(ex.wants_interface("eth0"));
        assert!(ex.wants_disk("vda1", false));
    }
}
