//! Pictures of what the other commands write: traces over time, cross-correlations, impulse
//! and step responses, validations and order searches, as SVG or PNG.
//!
//! The figures are built from the files (CSV, JSON) the commands leave behind, never from a
//! recomputation, so a picture can be redrawn or restyled from the results alone ([`input`]).
//! A [`Figure`] is plain data (panels of layers) drawn by one renderer for both formats, so
//! the SVG and the PNG of a figure show the same thing and Rust callers can build their own.
//!
//! The font (DejaVu Sans) is compiled in and registered with plotters' `ab_glyph` text
//! renderer: a PNG needs no fontconfig, no system fonts and no C library, and text is measured
//! the same way on every machine. The SVG names the generic `sans-serif` family, so a viewer
//! uses its own sans font at the size measured with DejaVu's metrics.

mod draw;
mod glyphs;
pub mod input;
pub mod kinds;

use std::path::Path;

use anyhow::Context;

pub use input::{Criterion, Kind, Options, figure_from_files};

/// An RGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

/// Colours given to layers in order (Tableau 10: distinct, and readable on white).
pub const PALETTE: [Rgb; 10] = [
    Rgb(31, 119, 180),
    Rgb(255, 127, 14),
    Rgb(44, 160, 44),
    Rgb(214, 39, 40),
    Rgb(148, 103, 189),
    Rgb(140, 86, 75),
    Rgb(227, 119, 194),
    Rgb(127, 127, 127),
    Rgb(188, 189, 34),
    Rgb(23, 190, 207),
];

/// The grey of confidence and significance bands.
pub const BOUND_GREY: Rgb = Rgb(150, 150, 150);

/// How a layer's points are drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Mark {
    /// A line through the points; a NaN breaks it (a gap stays a gap).
    Line,
    /// A vertical stem from zero to each point, as for correlations at lags.
    Stems,
    /// A dot at each point.
    Points,
    /// A large ring around each point, to single it out (the best candidate).
    Highlight,
    /// A shaded area from `y` (low edge) up to these high edges; NaN breaks it.
    Band(Vec<f64>),
    /// An error bar at each point from `y` (low end) up to these high ends.
    Whiskers(Vec<f64>),
}

/// One set of points drawn one way, with an optional legend entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// Legend text; no entry when `None`.
    pub label: Option<String>,
    /// How the points are drawn.
    pub mark: Mark,
    /// Its colour; `None` takes the panel's next palette colour.
    pub color: Option<Rgb>,
    /// x of each point.
    pub x: Vec<f64>,
    /// y of each point (the low edge for a band); NaN where there is no value.
    pub y: Vec<f64>,
}

impl Layer {
    /// A layer of `mark` through (x, y).
    pub fn new(label: Option<String>, mark: Mark, x: Vec<f64>, y: Vec<f64>) -> Self {
        Layer {
            label,
            mark,
            color: None,
            x,
            y,
        }
    }

    /// A line with a legend entry.
    pub fn line(label: impl Into<String>, x: Vec<f64>, y: Vec<f64>) -> Self {
        Layer::new(Some(label.into()), Mark::Line, x, y)
    }

    /// Stems at lags, with a legend entry.
    pub fn stems(label: impl Into<String>, x: Vec<f64>, y: Vec<f64>) -> Self {
        Layer::new(Some(label.into()), Mark::Stems, x, y)
    }

    /// A shaded band between `lo` and `hi`, with a legend entry.
    pub fn band(label: impl Into<String>, x: Vec<f64>, lo: Vec<f64>, hi: Vec<f64>) -> Self {
        Layer::new(Some(label.into()), Mark::Band(hi), x, lo)
    }

    /// The same layer in colour `c`.
    pub fn color(mut self, c: Rgb) -> Self {
        self.color = Some(c);
        self
    }
}

/// One chart: axes, their titles, and layers drawn in order (bands first reads best).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Panel {
    /// Title above the chart.
    pub title: Option<String>,
    /// x-axis title.
    pub x_label: String,
    /// y-axis title (drawn rotated).
    pub y_label: String,
    /// A logarithmic y axis, when every value is positive and they span a decade or more.
    pub y_log: bool,
    /// What is drawn.
    pub layers: Vec<Layer>,
}

impl Panel {
    /// An empty panel with these axis titles.
    pub fn new(x_label: impl Into<String>, y_label: impl Into<String>) -> Self {
        Panel {
            title: None,
            x_label: x_label.into(),
            y_label: y_label.into(),
            y_log: false,
            layers: Vec::new(),
        }
    }

    /// The same panel with a title.
    pub fn titled(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Adds a layer.
    pub fn push(&mut self, layer: Layer) -> &mut Self {
        self.layers.push(layer);
        self
    }
}

/// Default width in pixels.
pub const DEFAULT_WIDTH: u32 = 900;
/// Default height in pixels of a figure with one row of panels.
pub const DEFAULT_HEIGHT: u32 = 500;
/// Default height of a figure with two rows or more (each row keeps room for its labels).
pub const DEFAULT_HEIGHT_ROWS: u32 = 760;

/// A whole picture: a title, rows of panels (each row split evenly), and a caption line.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Title at the top.
    pub title: String,
    /// A line of small print at the bottom (start time, bounds, sources).
    pub caption: Option<String>,
    /// Rows of panels, top to bottom.
    pub rows: Vec<Vec<Panel>>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Figure {
    /// A figure of `rows` at the default size for its number of rows.
    pub fn new(title: impl Into<String>, rows: Vec<Vec<Panel>>) -> Self {
        let height = if rows.len() > 1 {
            DEFAULT_HEIGHT_ROWS
        } else {
            DEFAULT_HEIGHT
        };
        Figure {
            title: title.into(),
            caption: None,
            rows,
            width: DEFAULT_WIDTH,
            height,
        }
    }

    /// The same figure with a caption.
    pub fn caption(mut self, caption: impl Into<String>) -> Self {
        self.caption = Some(caption.into());
        self
    }

    /// Every panel, row by row.
    pub fn panels(&self) -> impl Iterator<Item = &Panel> {
        self.rows.iter().flatten()
    }
}

/// An output format, chosen by the output file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Scalable vector graphics (text stays text).
    Svg,
    /// A PNG bitmap.
    Png,
}

impl Format {
    /// The format of `path` by its extension (case-insensitive); a usage error otherwise.
    pub fn of(path: &Path) -> anyhow::Result<Format> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => Err(anyhow::Error::new(crate::record::UsageError(format!(
                "cannot tell the picture format of {}: the output must end in .svg or .png",
                path.display()
            )))),
        }
    }
}

/// Smallest and largest picture side accepted, in pixels.
pub const SIZE_LIMITS: (u32, u32) = (200, 10_000);

/// Checks a figure's size: too small leaves no room for the axes, too large is a typo.
fn check_size(fig: &Figure) -> anyhow::Result<()> {
    let (lo, hi) = SIZE_LIMITS;
    for (what, v) in [("width", fig.width), ("height", fig.height)] {
        if !(lo..=hi).contains(&v) {
            return Err(anyhow::Error::new(crate::record::UsageError(format!(
                "a {what} of {v} px is outside {lo}..={hi}"
            ))));
        }
    }
    if fig.rows.iter().all(Vec::is_empty) {
        anyhow::bail!("the figure has no panels");
    }
    Ok(())
}

/// Registers the compiled-in font as `sans-serif` with plotters, once per process. Every
/// drawing (here, and `net::topo::svg`) calls it first: the `ab_glyph` text renderer knows no
/// font that was not registered.
pub fn register_fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped by the dejavu crate; a failure would be
        // a broken build, caught by every plot test.
        let ok = plotters::style::register_font(
            "sans-serif",
            plotters::style::FontStyle::Normal,
            dejavu::sans::regular(),
        )
        .is_ok();
        debug_assert!(ok, "DejaVu Sans did not load");
    });
}

/// Draws `fig` as an SVG document.
pub fn render_svg(fig: &Figure) -> anyhow::Result<String> {
    use plotters::prelude::*;
    check_size(fig)?;
    register_fonts();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (fig.width, fig.height)).into_drawing_area();
        draw::figure(fig, root)?;
    }
    Ok(out)
}

/// Draws `fig` as RGB pixels, row by row (width × height × 3 bytes).
pub fn render_rgb(fig: &Figure) -> anyhow::Result<Vec<u8>> {
    use plotters::prelude::*;
    check_size(fig)?;
    register_fonts();
    let mut buf = vec![255u8; fig.width as usize * fig.height as usize * 3];
    {
        let root = glyphs::Glyphs(BitMapBackend::with_buffer(
            &mut buf,
            (fig.width, fig.height),
        ))
        .into_drawing_area();
        draw::figure(fig, root)?;
    }
    Ok(buf)
}

/// Draws `fig` into `path`, as SVG or PNG by the path's extension.
pub fn render(fig: &Figure, path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    match Format::of(path)? {
        Format::Svg => {
            let svg = render_svg(fig)?;
            std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))
        }
        Format::Png => {
            check_size(fig)?;
            register_fonts();
            // The bitmap backend encodes (plotters' image-crate PNG encoder) and writes the file
            // only when the drawing is presented: a failed drawing leaves no half-written file.
            let root = glyphs::Glyphs(BitMapBackend::new(path, (fig.width, fig.height)))
                .into_drawing_area();
            draw::figure(fig, root).with_context(|| format!("cannot write {}", path.display()))
        }
    }
}
