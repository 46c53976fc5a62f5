//! `vmmon plot` on what the real commands write: every kind drawn to SVG and PNG from the
//! outputs of xcorr, impulse, fit + validate and order on a trace with a known relation, the
//! pictures checked (size, ink, text, the rotated y-axis title), and every error a user can
//! cause, with its message and exit code.

use std::path::{Path, PathBuf};

use crate::util::{gaussian, vmmon};

/// A 1 Hz trace where vm.cpu follows host.cpu three samples late, y = 0.5 y(t-1) + 2 u(t-3)
/// plus noise, with a second input (with a gap), an unrelated one, an `elapsed` column and a
/// text column.
fn write_trace(dir: &Path) -> PathBuf {
    let n = 400;
    let u = gaussian(11, n);
    let w = gaussian(12, n);
    let e = gaussian(13, n);
    let io = gaussian(14, n);
    let mut y = vec![0.0; n];
    for t in 0..n {
        let ar = if t >= 1 { 0.5 * y[t - 1] } else { 0.0 };
        let b = if t >= 3 { 2.0 * u[t - 3] } else { 0.0 };
        let c = if t >= 1 { 0.7 * w[t - 1] } else { 0.0 };
        y[t] = ar + b + c + 0.3 * e[t];
    }
    let mut csv =
        String::from("time,elapsed,host.cpu_user_pct,host.load,host.io,vm1.cpu_user_pct,host\n");
    for t in 0..n {
        let load = if (100..105).contains(&t) {
            String::new()
        } else {
            format!("{:.4}", 30.0 + 3.0 * w[t])
        };
        csv.push_str(&format!(
            "{:.6},{t},{:.4},{load},{:.4},{:.4},h1\n",
            1_700_000_000.0 + t as f64,
            50.0 + 10.0 * u[t],
            5.0 + io[t],
            100.0 + 10.0 * y[t]
        ));
    }
    let path = dir.join("tr.csv");
    std::fs::write(&path, csv).expect("write trace");
    path
}

fn ok(args: &[&str]) {
    let out = vmmon().args(args).output().expect("run vmmon");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn err(args: &[&str]) -> (i32, String) {
    let out = vmmon().args(args).output().expect("run vmmon");
    assert!(!out.status.success(), "{args:?} should fail");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The analysis outputs of the trace, as the commands write them.
struct Results {
    dir: tempfile::TempDir,
    trace: PathBuf,
}

impl Results {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let trace = write_trace(dir.path());
        let r = Results { dir, trace };
        let t = s(&r.trace).to_string();
        let p = |f: &str| r.path(f);
        ok(&[
            "xcorr",
            &t,
            "-u",
            "host.cpu_user_pct",
            "-y",
            "vm1.cpu_user_pct",
            "-L",
            "15",
            "-o",
            &p("xc.csv"),
            "--json",
            &p("xc.json"),
        ]);
        ok(&[
            "impulse",
            &t,
            "-u",
            "host.cpu_user_pct",
            "-y",
            "vm1.cpu_user_pct",
            "-M",
            "10",
            "-o",
            &p("imp.csv"),
            "--json",
            &p("imp.json"),
        ]);
        ok(&[
            "impulse",
            &t,
            "-u",
            "host.cpu_user_pct,host.io",
            "-y",
            "vm1.cpu_user_pct",
            "-M",
            "10",
            "--method",
            "fir",
            "-o",
            &p("imp2.csv"),
        ]);
        ok(&[
            "fit",
            &t,
            "-u",
            "host.cpu_user_pct",
            "-y",
            "vm1.cpu_user_pct",
            "--poles",
            "1",
            "--zeros",
            "1",
            "--delay",
            "3",
            "--to",
            "#249",
            "-o",
            &p("model.json"),
        ]);
        ok(&[
            "validate",
            &p("model.json"),
            &t,
            "--from",
            "#250",
            "-o",
            &p("val.csv"),
            "--json",
            &p("val.json"),
        ]);
        ok(&[
            "order",
            &t,
            "-u",
            "host.cpu_user_pct",
            "-y",
            "vm1.cpu_user_pct",
            "--poles",
            "1..2",
            "--zeros",
            "1..2",
            "--delay",
            "1..4",
            "--estimate",
            "0:60%",
            "--validate",
            "60%:",
            "-o",
            &p("order.csv"),
        ]);
        r
    }

    fn path(&self, f: &str) -> String {
        s(&self.dir.path().join(f)).to_string()
    }
}

/// Checks a PNG: it decodes, has the size asked for, is not blank, and has ink where the
/// rotated y-axis title of the first panel is drawn (the left edge, mid-height).
fn check_png(path: &str, (w, h): (u32, u32), what: &str) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{what}: {path} does not decode: {e}"))
        .to_rgb8();
    assert_eq!(img.dimensions(), (w, h), "{what}");
    let ink = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(
        ink > (w * h / 50) as usize,
        "{what}: only {ink} pixels are not white"
    );
    let dark = |x0: u32, x1: u32, y0: u32, y1: u32| {
        (x0..x1)
            .flat_map(|x| (y0..y1).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 110))
            .count()
    };
    // The first row of panels spans the body under the 44 px title; its y title is centred
    // in the first 34 px from the left, where nothing else is drawn.
    let rows = if h > 600 { 2 } else { 1 };
    let body = (h - 44 - 30) / rows;
    let mid = 44 + body / 2;
    let title = dark(6, 34, mid - body / 4, mid + body / 4);
    assert!(
        title > 30,
        "{what}: the rotated y-axis title is missing ({title} dark pixels at the left edge)"
    );
    // The title at the top is drawn too.
    assert!(dark(0, w, 0, 44) > 100, "{what}: no figure title");
}

/// Checks an SVG: a document of the size asked for, with these texts and a rotated y title.
fn check_svg(path: &str, (w, h): (u32, u32), texts: &[&str], what: &str) {
    let svg = std::fs::read_to_string(path).expect("svg");
    assert!(svg.starts_with("<svg"), "{what}");
    assert!(
        svg.contains(&format!("width=\"{w}\"")) && svg.contains(&format!("height=\"{h}\"")),
        "{what}: size"
    );
    assert!(svg.trim_end().ends_with("</svg>"), "{what}: unfinished");
    assert!(
        svg.contains("rotate(270"),
        "{what}: no rotated y-axis title"
    );
    for t in texts {
        let escaped = t
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(
            svg.contains(t) || svg.contains(&escaped),
            "{what}: no text '{t}' in the SVG"
        );
    }
}

/// Inputs, extra arguments, picture size, texts the SVG must hold, and a name.
type Case<'a> = (Vec<String>, Vec<&'a str>, (u32, u32), Vec<&'a str>, &'a str);

#[test]
fn every_kind_draws_to_svg_and_png() {
    let r = Results::new();
    let trace = s(&r.trace).to_string();
    let wide = (900, 500);
    let tall = (900, 760);
    // (inputs, extra args, size, texts in the SVG, name)
    let cases: Vec<Case> = vec![
        (
            vec![trace.clone()],
            vec![],
            wide,
            vec![
                "4 columns over time",
                "time since the first row (s)",
                "host.load",
                "2023-11-14T22:13:20Z",
            ],
            "trace",
        ),
        (
            vec![trace.clone()],
            vec!["--columns", "vm1.cpu_user_pct"],
            wide,
            vec!["vm1.cpu_user_pct over time", "vm1.cpu_user_pct"],
            "trace-one",
        ),
        (
            vec![r.path("xc.csv"), r.path("xc.json")],
            vec![],
            wide,
            vec![
                "Cross-correlation host.cpu_user_pct → vm1.cpu_user_pct",
                "99% bound",
                "correlation",
                "peak r = ",
            ],
            "xcorr",
        ),
        (
            vec![r.path("imp.csv")],
            vec![],
            tall,
            vec![
                "Impulse response",
                "Step response",
                "impulse response g",
                "lag (s)",
            ],
            "impulse",
        ),
        (
            vec![r.path("imp.json")],
            vec![],
            tall,
            vec![
                "Impulse response host.cpu_user_pct → vm1.cpu_user_pct",
                "g from host.cpu_user_pct",
            ],
            "impulse-json",
        ),
        (
            vec![r.path("imp2.csv")],
            vec![],
            tall,
            vec![
                "g from host.cpu_user_pct",
                "g from host.io",
                "g ± sd (host.io)",
            ],
            "impulse-fir-two-inputs",
        ),
        (
            vec![r.path("val.csv")],
            vec![],
            wide,
            vec![
                "measured",
                "simulated (free run)",
                "predicted (one step)",
                "output",
            ],
            "validation",
        ),
        (
            vec![r.path("val.csv"), r.path("val.json")],
            vec![],
            tall,
            vec![
                "Validation: fit ",
                "Residual autocorrelation",
                "Input–residual cross-correlation",
                "input 1",
            ],
            "validation-json",
        ),
        (
            vec![r.path("order.csv")],
            vec![],
            wide,
            vec![
                "Order search by validation loss: best ",
                "validation loss",
                "nk = 3",
                "parameters d",
            ],
            "order",
        ),
        (
            vec![r.path("order.csv")],
            vec![
                "--criterion",
                "bic",
                "--title",
                "BIC <grid>",
                "--width",
                "700",
                "--height",
                "420",
            ],
            (700, 420),
            vec!["BIC &lt;grid&gt;", "BIC"],
            "order-bic",
        ),
    ];
    for (inputs, extra, size, texts, name) in cases {
        for ext in ["svg", "png"] {
            let out = r.path(&format!("{name}.{ext}"));
            let mut args: Vec<&str> = vec!["plot"];
            args.extend(inputs.iter().map(String::as_str));
            args.extend(["-o", &out]);
            args.extend(&extra);
            ok(&args);
            let what = format!("{name}.{ext}");
            if ext == "svg" {
                check_svg(&out, size, &texts, &what);
            } else {
                check_png(&out, size, &what);
            }
        }
    }
}

#[test]
fn trace_gaps_stay_gaps_and_kinds_can_be_forced() {
    let r = Results::new();
    let t = s(&r.trace).to_string();
    let out = r.path("t.svg");
    let o = vmmon()
        .args(["plot", "--kind", "trace", &t, "-o", &out])
        .output()
        .expect("run");
    assert!(o.status.success());
    // The text column is left out with a note; time and elapsed are not drawn.
    let note = String::from_utf8_lossy(&o.stderr);
    assert!(note.contains("not numbers: host"), "{note}");
    let svg = std::fs::read_to_string(&out).expect("svg");
    assert!(!svg.contains("\nelapsed\n"), "elapsed drawn");
    // host.load has five empty cells: its line is two paths, the others one each.
    let paths = |colour: &str| svg.matches(&format!("stroke=\"{colour}\"")).count();
    let (blue, orange) = (paths("#1F77B4"), paths("#FF7F0E"));
    // (Each colour also draws its legend swatch.)
    assert_eq!(
        orange,
        blue + 1,
        "host.load paths {orange}, cpu paths {blue}"
    );
    // The validate CSV is a trace too (it has a time column), when asked.
    ok(&[
        "plot",
        "--kind",
        "trace",
        &r.path("val.csv"),
        "--columns",
        "measured,residual",
        "-o",
        &r.path("v.png"),
    ]);
    check_png(&r.path("v.png"), (900, 500), "validate CSV as a trace");
    // Two traces on one time axis, named by file in the legend.
    let other = r.dir.path().join("other.csv");
    std::fs::copy(&r.trace, &other).expect("copy");
    ok(&[
        "plot",
        &t,
        s(&other),
        "--columns",
        "host.load",
        "-o",
        &r.path("two.svg"),
    ]);
    let svg = std::fs::read_to_string(r.path("two.svg")).expect("svg");
    assert!(svg.contains("host.load (tr.csv)") && svg.contains("host.load (other.csv)"));
    // More than eight numeric columns: the first eight, with a note.
    let mut wide = String::from("time");
    for i in 0..10 {
        wide.push_str(&format!(",c{i}"));
    }
    wide.push('\n');
    for t in 0..20 {
        wide.push_str(&format!("{t}"));
        for i in 0..10 {
            wide.push_str(&format!(",{}", i * t));
        }
        wide.push('\n');
    }
    let f = r.dir.path().join("wide.csv");
    std::fs::write(&f, wide).expect("write");
    let o = vmmon()
        .args(["plot", s(&f), "-o", &r.path("w.svg")])
        .output()
        .expect("run");
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("10 numeric columns; drawing the first 8"));
    let svg = std::fs::read_to_string(r.path("w.svg")).expect("svg");
    assert!(svg.contains("\nc7\n") && !svg.contains("\nc8\n"));
}

#[test]
fn errors_name_the_problem() {
    let r = Results::new();
    let t = s(&r.trace).to_string();
    // An unknown extension is a usage error, found before any reading.
    let (code, e) = err(&["plot", &t, "-o", &r.path("x.jpg")]);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("must end in .svg or .png"), "{e}");
    let (code, _) = err(&["plot", &t]);
    assert_eq!(code, 2);
    // A missing column lists the ones there are.
    let (code, e) = err(&["plot", &t, "--columns", "nope", "-o", &r.path("x.svg")]);
    assert_eq!(code, 1, "{e}");
    assert!(
        e.contains("no column named 'nope'") && e.contains("host.cpu_user_pct"),
        "{e}"
    );
    // A text column asked for by name: file, line and column of the first bad cell.
    let (code, e) = err(&["plot", &t, "--columns", "host", "-o", &r.path("x.svg")]);
    assert_eq!(code, 1);
    assert!(
        e.contains("tr.csv:2:7: 'h1' in column host is not a number"),
        "{e}"
    );
    // A ragged record names its line.
    let bad = r.dir.path().join("bad.csv");
    std::fs::write(&bad, "time,a\n1,2\n2,3,4\n").expect("write");
    let (code, e) = err(&["plot", s(&bad), "-o", &r.path("x.png")]);
    assert_eq!(code, 1);
    assert!(
        e.contains("bad.csv:3: the record has 3 fields, but the header has 2"),
        "{e}"
    );
    // A malformed JSON names line and column.
    let bad = r.dir.path().join("bad.json");
    std::fs::write(&bad, "{\n  \"n\": ,\n}\n").expect("write");
    let (code, e) = err(&["plot", &r.path("val.csv"), s(&bad), "-o", &r.path("x.svg")]);
    assert_eq!(code, 1);
    assert!(e.contains("bad.json:2:8: not valid JSON"), "{e}");
    // An impulse JSON whose arrays disagree in length (a short `sd` made the whiskers read
    // past its end): named, not a panic.
    let text = std::fs::read_to_string(r.path("imp.json")).expect("imp.json");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let bound = v["responses"][0]["bound"].as_array_mut().expect("bound");
    bound.truncate(bound.len() / 2);
    let short = r.dir.path().join("short.json");
    std::fs::write(&short, v.to_string()).expect("write");
    let (code, e) = err(&["plot", s(&short), "-o", &r.path("x.svg")]);
    assert_eq!(code, 1);
    assert!(
        e.contains("short.json: response 1: \"bound\" has") && e.contains("but \"g\" has"),
        "{e}"
    );
    // A file of unknown form asks for --kind.
    let odd = r.dir.path().join("odd.csv");
    std::fs::write(&odd, "a,b\n1,2\n").expect("write");
    let (code, e) = err(&["plot", s(&odd), "-o", &r.path("x.svg")]);
    assert_eq!(code, 2);
    assert!(
        e.contains("cannot tell what") && e.contains("give --kind"),
        "{e}"
    );
    // A forced kind the file does not fit: the columns it lacks.
    let (code, e) = err(&[
        "plot",
        "--kind",
        "xcorr",
        &r.path("order.csv"),
        "-o",
        &r.path("x.svg"),
    ]);
    assert_eq!(code, 1);
    assert!(e.contains("no column named 'lag_s'"), "{e}");
    let (code, e) = err(&[
        "plot",
        "--kind",
        "trace",
        &r.path("xc.csv"),
        "-o",
        &r.path("x.svg"),
    ]);
    assert_eq!(code, 1);
    assert!(e.contains("a trace needs a time column"), "{e}");
    // Inputs that do not go together.
    let (code, e) = err(&[
        "plot",
        &r.path("xc.csv"),
        &r.path("val.json"),
        "-o",
        &r.path("x.svg"),
    ]);
    assert_eq!(code, 2);
    assert!(e.contains("a xcorr picture takes the xcorr CSV"), "{e}");
    let (code, e) = err(&["plot", &r.path("val.json"), "-o", &r.path("x.svg")]);
    assert_eq!(code, 2);
    assert!(e.contains("give the validate CSV (-o) first"), "{e}");
    let (code, e) = err(&["plot", &r.path("xc.json"), "-o", &r.path("x.svg")]);
    assert_eq!(code, 2);
    assert!(e.contains("needs the xcorr CSV"), "{e}");
    let (code, e) = err(&[
        "plot",
        &r.path("order.csv"),
        &r.path("xc.csv"),
        "-o",
        &r.path("x.svg"),
    ]);
    assert_eq!(code, 2);
    assert!(e.contains("reads one CSV"), "{e}");
    let (code, e) = err(&[
        "plot",
        &r.path("xc.csv"),
        "--columns",
        "a",
        "--kind",
        "xcorr",
        "-o",
        &r.path("x.svg"),
    ]);
    assert_eq!(code, 2);
    assert!(e.contains("--kind trace only"), "{e}");
    // An order grid without validation losses cannot be drawn by them.
    let grid = r.dir.path().join("grid.csv");
    ok(&[
        "order",
        &t,
        "-u",
        "host.cpu_user_pct",
        "-y",
        "vm1.cpu_user_pct",
        "--poles",
        "1",
        "--zeros",
        "1",
        "--delay",
        "1..2",
        "-o",
        s(&grid),
    ]);
    let (code, e) = err(&[
        "plot",
        s(&grid),
        "--criterion",
        "validation",
        "-o",
        &r.path("x.svg"),
    ]);
    assert_eq!(code, 1);
    assert!(
        e.contains("column validation_loss has no values") && e.contains("--validate"),
        "{e}"
    );
    // Without validation losses the default is AIC.
    ok(&["plot", s(&grid), "-o", &r.path("aic.svg")]);
    assert!(
        std::fs::read_to_string(r.path("aic.svg"))
            .expect("svg")
            .contains("by AIC")
    );
    // Sizes out of range, and an output that cannot be written.
    let (code, e) = err(&["plot", &t, "--width", "50", "-o", &r.path("x.svg")]);
    assert_eq!(code, 2);
    assert!(e.contains("a width of 50 px is outside"), "{e}");
    let (code, e) = err(&["plot", &t, "-o", &r.path("no/such/dir/x.png")]);
    assert_eq!(code, 1);
    assert!(e.contains("cannot write"), "{e}");
    let (code, e) = err(&["plot", &r.path("missing.csv"), "-o", &r.path("x.svg")]);
    assert_eq!(code, 1);
    assert!(e.contains("missing.csv"), "{e}");
}
