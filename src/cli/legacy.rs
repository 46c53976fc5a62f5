//! The single-dash long options of the original `ns` collector (`-rate 1 -period 600`).
//!
//! clap cannot parse single-dash long words, so exactly these words are rewritten to their
//! double-dash form before parsing. A word is left alone when it is the value of the option
//! before it (`--name -max` names the source "-max"), and after `--`.

use std::ffi::OsString;

/// The `ns` options that keep their single-dash spelling.
pub const LEGACY_WORDS: [&str; 5] = ["-rate", "-period", "-max", "-name", "-timestamp"];

/// `record` options that take a value in the next word (so that word is never rewritten).
const TAKES_VALUE: [&str; 18] = [
    "-r",
    "--rate",
    "-p",
    "--period",
    "-n",
    "--max",
    "--name",
    "-o",
    "--output",
    "--meta",
    "--devices",
    "--exclude",
    "--proc-root",
    "--sys-root",
    "-rate",
    "-period",
    "-max",
    "-name",
];

/// Rewrites a full argv: `ns ARGS` becomes `vmmon record ARGS`, and the legacy words of a
/// `record` invocation become double-dash options.
pub fn rewrite(mut args: Vec<OsString>) -> Vec<OsString> {
    let invoked_as_ns = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "ns");
    if invoked_as_ns {
        args.insert(1, OsString::from("record"));
    }
    if args.get(1).is_none_or(|a| a != "record") {
        return args;
    }
    let mut out = Vec::with_capacity(args.len());
    out.extend(args.drain(..2));
    let mut value_next = false;
    let mut done = false;
    for arg in args {
        let s = arg.to_str();
        let rewrite_it = !done && !value_next && s.is_some_and(|s| LEGACY_WORDS.contains(&s));
        value_next = !done && !value_next && s.is_some_and(|s| TAKES_VALUE.contains(&s));
        if s == Some("--") {
            done = true;
        }
        if rewrite_it {
            let mut long = OsString::from("-");
            long.push(&arg);
            out.push(long);
        } else {
            out.push(arg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<OsString> {
        s.split(' ').map(OsString::from).collect()
    }

    fn joined(v: Vec<OsString>) -> String {
        v.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn legacy_words_become_long_options() {
        let out = rewrite(words(
            "vmmon record -rate 1 -period 600 -max 10 -name host -timestamp",
        ));
        assert_eq!(
            joined(out),
            "vmmon record --rate 1 --period 600 --max 10 --name host --timestamp"
        );
    }

    #[test]
    fn values_and_shorts_are_untouched() {
        let out = rewrite(words("vmmon record -r 2 --name -max -o - -n 3"));
        assert_eq!(joined(out), "vmmon record -r 2 --name -max -o - -n 3");
        let out = rewrite(words("vmmon record -name -rate -rate -1"));
        assert_eq!(joined(out), "vmmon record --name -rate --rate -1");
    }

    #[test]
    fn ns_is_record() {
        let out = rewrite(words("/usr/local/bin/ns -rate 5 -max 2"));
        assert_eq!(joined(out), "/usr/local/bin/ns record --rate 5 --max 2");
    }

    #[test]
    fn other_subcommands_and_after_double_dash_untouched() {
        assert_eq!(
            joined(rewrite(words("vmmon xcorr -rate"))),
            "vmmon xcorr -rate"
        );
        assert_eq!(
            joined(rewrite(words("vmmon record -- -rate"))),
            "vmmon record -- -rate"
        );
    }
}
