//! Drawing from Rust with `vmmon::plot`: a cross-correlation computed in memory, drawn with
//! the same figure `vmmon plot` makes of `vmmon xcorr -o`, then a figure of one's own built
//! from panels and layers. Run: `cargo run --example plot` (writes to the temp directory).

use vmmon::plot::{self, BOUND_GREY, Figure, Layer, Mark, Panel, kinds};
use vmmon::sysid::xcorr::cross_correlation;

fn main() -> anyhow::Result<()> {
    // A deterministic pseudo-random input u, and y = u four samples late plus noise.
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let n = 600;
    let u: Vec<f64> = (0..n).map(|_| next()).collect();
    let y: Vec<f64> = (0..n)
        .map(|t| if t >= 4 { u[t - 4] } else { 0.0 } + 0.5 * next())
        .collect();
    let cc = cross_correlation(&[(&u, &y)], 20, ("u", "y"))?;

    // 1. The standard picture of a cross-correlation, as `vmmon plot xc.csv xc.json` draws it.
    let fig = kinds::xcorr(&kinds::XcorrData {
        lag_s: cc.lags.iter().map(|&l| l as f64).collect(),
        xcorr: cc.xcorr.clone(),
        bound: cc.bound,
        input: Some("u".into()),
        output: Some("y".into()),
        source: "examples/plot.rs".into(),
    });
    let dir = std::env::temp_dir();
    for name in ["vmmon-example-xcorr.svg", "vmmon-example-xcorr.png"] {
        plot::render(&fig, &dir.join(name))?;
        println!("wrote {}", dir.join(name).display());
    }

    // 2. A figure of one's own: the two series over time above their correlation.
    let t: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let mut series = Panel::new("sample", "value").titled("Input and delayed output");
    series.push(Layer::line("u", t.clone(), u));
    series.push(Layer::line("y", t, y));
    let lags: Vec<f64> = cc.lags.iter().map(|&l| l as f64).collect();
    let mut corr = Panel::new("lag (samples)", "correlation").titled("Cross-correlation");
    let bound = vec![cc.bound; lags.len()];
    let minus: Vec<f64> = bound.iter().map(|b| -b).collect();
    corr.push(Layer::band("99% bound", lags.clone(), minus, bound).color(BOUND_GREY));
    corr.push(Layer::new(Some("r(k)".into()), Mark::Stems, lags, cc.xcorr));
    let fig = Figure::new("u leads y by 4 samples", vec![vec![series], vec![corr]])
        .caption("drawn by examples/plot.rs");
    let svg = plot::render_svg(&fig)?;
    let rgb = plot::render_rgb(&fig)?;
    println!(
        "own figure: {} bytes of SVG, {}x{} RGB pixels ({} bytes)",
        svg.len(),
        fig.width,
        fig.height,
        rgb.len()
    );
    plot::render(&fig, &dir.join("vmmon-example-own.png"))?;
    println!("wrote {}", dir.join("vmmon-example-own.png").display());
    Ok(())
}
