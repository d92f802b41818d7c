//! The paper's figures in plotters, as PNG and SVG: Fig. 1 (bias-change heat map), Fig. 2
//! (dev score vs training-set size with the BitFit/Full-FT crossing), learning curves and the
//! generalization gap. Text uses the DejaVu Sans font shipped in `assets/fonts` (no system
//! fonts); PNG bytes are encoded here (flate2 + crc32fast) so every file is written atomically.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{BestCells, Curve, Gap, HeatMap, Rules, Setting, mean_std, method_label};
use crate::finetune::method::{PAPER_METHODS, paper_method};

const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // the font is compiled in; a failure here is a broken build, not bad input
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES)
            .unwrap_or_else(|_| panic!("assets/fonts/DejaVuSans.ttf is not a valid font"));
    });
}

fn pe<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a figure: {e:?}")
}

/// One figure, drawn twice (PNG and SVG) from the same code.
pub struct Figure {
    /// file stem, e.g. `fig1_bias_change_all-MiniLM-L6-v2_RTE_bitfit`
    pub name: String,
    pub size: (u32, u32),
    pub png: Vec<u8>,
    pub svg: String,
}

/// Figures drawn and the ones that could not be (with the reason).
pub struct Figures {
    pub figures: Vec<Figure>,
    pub skipped: Vec<String>,
}

trait Draw {
    /// The figure's size for its content (panels, cells, bars).
    fn size(&self) -> (u32, u32);
    /// Its title and grey header lines ([`header_lines`]), if it has them: [`render`] draws them
    /// with [`subtitled`] and widens the figure to fit them.
    fn header(&self) -> Option<[String; 3]> {
        None
    }
    /// Draw the figure into `body`: the whole figure, or the area below its [`Draw::header`].
    fn draw<DB: DrawingBackend>(&self, body: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// The width a [`subtitled`] header needs: its widest line (title at 20 px, the grey lines at 13
/// px, measured with the figure's font) and a margin each side.
fn header_width([title, protocol, note]: &[String; 3]) -> u32 {
    let width = |text: &str, size: f64| text_style(size).font.box_size(text).map_or(0, |b| b.0);
    width(title, 20.0)
        .max(width(protocol, 13.0))
        .max(width(note, 13.0))
        + 2 * 16
}

fn render(name: String, fig: &impl Draw) -> Result<Figure> {
    register_font();
    let (w, h) = fig.size();
    let header = fig.header();
    let w = header
        .as_ref()
        .map_or(w, |lines| w.max(header_width(lines)));
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    paint(
        &BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area(),
        header.as_ref(),
        fig,
    )?;
    let mut svg = String::new();
    paint(
        &SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area(),
        header.as_ref(),
        fig,
    )?;
    Ok(Figure {
        name,
        size: (w, h),
        png: encode_png(w, h, &rgb)?,
        svg,
    })
}

/// One backend's copy of a figure: white ground, the header if any, the figure below it.
fn paint<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    header: Option<&[String; 3]>,
    fig: &impl Draw,
) -> Result<()> {
    root.fill(&WHITE).map_err(pe)?;
    match header {
        Some(lines) => fig.draw(&subtitled(root, lines)?)?,
        None => fig.draw(root)?,
    }
    root.present().map_err(pe)
}

/// 8-bit RGB PNG (filter 0 on every row, zlib stream from flate2).
pub fn encode_png(w: u32, h: u32, rgb: &[u8]) -> Result<Vec<u8>> {
    anyhow::ensure!(
        rgb.len() == (w * h * 3) as usize,
        "PNG: {} bytes for {w}x{h} RGB",
        rgb.len()
    );
    let mut raw = Vec::with_capacity(rgb.len() + h as usize);
    for row in rgb.chunks((w * 3) as usize) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw)?;
    let idat = z.finish()?;
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    };
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8 bits, RGB, deflate, filter method 0, no interlace
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &idat);
    chunk(b"IEND", &[]);
    Ok(out)
}

/// A file-name-safe form of a label.
pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The task's headline metric as the paper names it.
pub fn headline_label(task: &str) -> &'static str {
    match task {
        "CoLA" => "MCC",
        "MRPC" | "QQP" => "F1",
        "STS-B" => "Spearman",
        "SQuAD" => "exact match",
        _ => "accuracy",
    }
}

/// A method's colour: the paper's methods have theirs in [`PAPER_METHODS`] (Full-FT red, BitFit
/// blue, …), any other comes from plotters' palette by a hash of its spelling.
fn method_colour(method: &str) -> RGBColor {
    match paper_method(method) {
        Some(m) => RGBColor(m.colour.0, m.colour.1, m.colour.2),
        None => {
            let h = method
                .bytes()
                .fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(b as usize));
            let c = Palette99::pick(h).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

/// 10 to an integer power in Unicode superscript: `×10⁻²`.
pub fn times_ten_to(exp: i32) -> String {
    let sup = |c: char| match c {
        '-' => '⁻',
        '0' => '⁰',
        '1' => '¹',
        '2' => '²',
        '3' => '³',
        '4' => '⁴',
        '5' => '⁵',
        '6' => '⁶',
        '7' => '⁷',
        '8' => '⁸',
        _ => '⁹',
    };
    format!(
        "×10{}",
        exp.to_string().chars().map(sup).collect::<String>()
    )
}

fn text_style(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

// ---------------------------------------------------------------- Fig. 1

/// Sequential blue scale (matplotlib "Blues" end points), t in [0, 1].
pub fn blues(t: f64) -> RGBColor {
    let stops = [
        (247.0, 251.0, 255.0),
        (107.0, 174.0, 214.0),
        (8.0, 48.0, 107.0),
    ];
    let t = t.clamp(0.0, 1.0) * 2.0;
    let (a, b, u) = if t <= 1.0 {
        (stops[0], stops[1], t)
    } else {
        (stops[1], stops[2], t - 1.0)
    };
    let mix = |x: f64, y: f64| (x + (y - x) * u).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

struct HeatFig<'a> {
    h: &'a HeatMap,
    /// values are printed as v / 10^exp
    exp: i32,
    max: f64,
}

const CELL_W: i32 = 64;
const CELL_H: i32 = 34;
const LEFT: i32 = 90;
const TOP: i32 = 96;

impl HeatFig<'_> {
    fn new(h: &HeatMap) -> HeatFig<'_> {
        let max = h
            .rows
            .iter()
            .flat_map(|(_, v, a)| v.iter().flatten().copied().chain([*a]))
            .fold(0.0f64, f64::max);
        let exp = if max > 0.0 {
            max.log10().floor() as i32
        } else {
            0
        };
        HeatFig { h, exp, max }
    }
    fn cols(&self) -> i32 {
        self.h.layers as i32 + 1
    }
}

impl Draw for HeatFig<'_> {
    fn size(&self) -> (u32, u32) {
        let w = LEFT + self.cols() * CELL_W + 10 + 110;
        let h = TOP + self.h.rows.len() as i32 * CELL_H + 70;
        (w.max(640) as u32, h as u32)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let h = self.h;
        let title = format!(
            "Fig. 1 · bias change per layer after {} — {}, {}",
            method_label(&h.key.method),
            h.key.task,
            h.key.model
        );
        root.draw(&Text::new(title, (12, 10), text_style(18.0)))
            .map_err(pe)?;
        let sub = format!(
            "cell = mean |b_final − b_initial| over the vector's dimensions ({}), mean over seeds",
            times_ten_to(self.exp)
        );
        root.draw(&Text::new(
            sub,
            (12, 36),
            text_style(13.0).color(&RGBColor(80, 80, 80)),
        ))
        .map_err(pe)?;
        let protocol = format!("protocol: {}", h.key.protocol);
        root.draw(&Text::new(
            protocol,
            (12, 56),
            text_style(13.0).color(&RGBColor(80, 80, 80)),
        ))
        .map_err(pe)?;
        let scale = 10f64.powi(self.exp);
        let gap = 10; // between the last layer and Avg.
        let x_of = |c: i32| LEFT + c * CELL_W + if c == self.cols() - 1 { gap } else { 0 };
        for (r, (label, vals, avg)) in h.rows.iter().enumerate() {
            let y = TOP + r as i32 * CELL_H;
            root.draw(&Text::new(
                label.clone(),
                (LEFT - 8, y + CELL_H / 2),
                text_style(15.0).pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(pe)?;
            let cells = vals.iter().copied().chain([Some(*avg)]);
            for (c, v) in cells.enumerate() {
                let x = x_of(c as i32);
                let rect = [(x, y), (x + CELL_W - 2, y + CELL_H - 2)];
                match v {
                    Some(v) => {
                        let t = if self.max > 0.0 { v / self.max } else { 0.0 };
                        root.draw(&Rectangle::new(rect, blues(t).filled()))
                            .map_err(pe)?;
                        let fg = if t > 0.55 { WHITE } else { BLACK };
                        root.draw(&Text::new(
                            format!("{:.2}", v / scale),
                            (x + CELL_W / 2 - 1, y + CELL_H / 2 - 1),
                            text_style(13.0)
                                .color(&fg)
                                .pos(Pos::new(HPos::Center, VPos::Center)),
                        ))
                        .map_err(pe)?;
                    }
                    None => {
                        root.draw(&Rectangle::new(rect, RGBColor(235, 235, 235).filled()))
                            .map_err(pe)?;
                    }
                }
            }
        }
        let y_axis = TOP + h.rows.len() as i32 * CELL_H + 4;
        for c in 0..self.cols() {
            let label = if c == self.cols() - 1 {
                "Avg.".to_string()
            } else {
                (c + 1).to_string()
            };
            root.draw(&Text::new(
                label,
                (x_of(c) + CELL_W / 2 - 1, y_axis),
                text_style(14.0).pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(pe)?;
        }
        root.draw(&Text::new(
            "layer",
            (LEFT + (h.layers as i32 * CELL_W) / 2, y_axis + 24),
            text_style(15.0).pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(pe)?;
        // colour bar
        let bx = x_of(self.cols() - 1) + CELL_W + 24;
        let (by0, by1) = (TOP, TOP + h.rows.len() as i32 * CELL_H - 2);
        let steps = (by1 - by0).max(1);
        for i in 0..steps {
            let t = 1.0 - i as f64 / steps as f64;
            root.draw(&Rectangle::new(
                [(bx, by0 + i), (bx + 18, by0 + i + 1)],
                blues(t).filled(),
            ))
            .map_err(pe)?;
        }
        root.draw(&Rectangle::new(
            [(bx, by0), (bx + 18, by1)],
            BLACK.stroke_width(1),
        ))
        .map_err(pe)?;
        for k in 0..=4 {
            let v = self.max * k as f64 / 4.0;
            let y = by1 - ((by1 - by0) as f64 * k as f64 / 4.0) as i32;
            root.draw(&PathElement::new(vec![(bx + 18, y), (bx + 23, y)], BLACK))
                .map_err(pe)?;
            root.draw(&Text::new(
                format!("{:.2}", v / scale),
                (bx + 27, y),
                text_style(12.0).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(pe)?;
        }
        root.draw(&Text::new(
            format!("|Δb| {}", times_ten_to(self.exp)),
            (bx - 6, by1 + 12),
            text_style(12.0).pos(Pos::new(HPos::Left, VPos::Top)),
        ))
        .map_err(pe)?;
        Ok(())
    }
}

// ---------------------------------------------------------------- Fig. 2

/// Where two score curves over the same sizes cross, interpolated linearly in log(size):
/// the first sign change of (a − b) between consecutive sizes.
pub fn crossing(xs: &[f64], a: &[f64], b: &[f64]) -> Option<f64> {
    let d: Vec<f64> = a.iter().zip(b).map(|(a, b)| a - b).collect();
    for i in 1..xs.len() {
        let (d0, d1) = (d[i - 1], d[i]);
        if d0 == 0.0 {
            return Some(xs[i - 1]);
        }
        if d0.signum() != d1.signum() {
            let (l0, l1) = (xs[i - 1].ln(), xs[i].ln());
            return Some((l0 + (l1 - l0) * d0 / (d0 - d1)).exp());
        }
    }
    None
}

/// A corner of a plot area where a legend can sit (the upper left holds a panel's note).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corner {
    LowerRight,
    LowerLeft,
    UpperRight,
}

impl Corner {
    fn position(self) -> SeriesLabelPosition {
        match self {
            Corner::LowerRight => SeriesLabelPosition::LowerRight,
            Corner::LowerLeft => SeriesLabelPosition::LowerLeft,
            Corner::UpperRight => SeriesLabelPosition::UpperRight,
        }
    }
}

/// The corner where a legend hides the least of the curves: each curve (points in the plot's unit
/// square, x and y from 0 to 1) is sampled along its segments, and the corner whose legend-sized
/// box (a third of the width, a quarter of the height) holds the fewest samples wins; ties go to
/// the lower right, then the lower left, then the upper right.
pub fn legend_corner(curves: &[Vec<(f64, f64)>]) -> Corner {
    const STEPS: usize = 50;
    let samples: Vec<(f64, f64)> = curves
        .iter()
        .flat_map(|c| {
            let ends = c.iter().copied();
            let segments = c.windows(2).flat_map(|w| {
                let ((x0, y0), (x1, y1)) = (w[0], w[1]);
                (1..STEPS).map(move |i| {
                    let t = i as f64 / STEPS as f64;
                    (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
                })
            });
            ends.chain(segments)
        })
        .collect();
    let inside = |corner: Corner| {
        samples
            .iter()
            .filter(|(x, y)| match corner {
                Corner::LowerRight => *x > 2.0 / 3.0 && *y < 0.25,
                Corner::LowerLeft => *x < 1.0 / 3.0 && *y < 0.25,
                Corner::UpperRight => *x > 2.0 / 3.0 && *y > 0.75,
            })
            .count()
    };
    [Corner::LowerRight, Corner::LowerLeft, Corner::UpperRight]
        .into_iter()
        .min_by_key(|c| inside(*c))
        .unwrap_or(Corner::LowerRight)
}

/// One method's curve in a panel: (examples, mean, std).
type Points = Vec<(f64, f64, f64)>;

/// The curves of one panel: method → points.
type Lines = BTreeMap<String, Points>;

struct SizeFig {
    model: String,
    protocol: String,
    note: String,
    /// (task, metric label, method → points sorted by size)
    panels: Vec<(String, String, Lines)>,
}

fn panel_grid(n: usize) -> (usize, usize) {
    let cols = n.clamp(1, 3);
    (n.div_ceil(cols), cols)
}

/// Size of a figure of `n` panels (up to 3 per row) under a title.
fn panels_size(n: usize) -> (u32, u32) {
    let (r, c) = panel_grid(n);
    ((c as u32 * 540).max(720), 80 + r as u32 * 420)
}

/// The three lines [`subtitled`] draws: the title, "protocol: …" and the note.
fn header_lines(title: String, protocol: &str, note: &str) -> [String; 3] {
    [title, format!("protocol: {protocol}"), note.to_string()]
}

/// A title line, a smaller grey protocol line and a grey note line (which runs and which epoch
/// the figure shows); returns the area below them.
fn subtitled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    [title, protocol, note]: &[String; 3],
) -> Result<DrawingArea<DB, Shift>> {
    let grey = |size| text_style(size).color(&RGBColor(90, 90, 90));
    let body = root.titled(title, text_style(20.0)).map_err(pe)?;
    let body = body.titled(protocol, grey(13.0)).map_err(pe)?;
    body.titled(note, grey(13.0)).map_err(pe)
}

/// Draw one line per method with a ±std band, and a legend.
fn draw_lines<
    'a,
    DB: DrawingBackend + 'a,
    X: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    x_range: X,
    lines: &Lines,
    (x_desc, y_desc): (&str, &str),
    x_fmt: &dyn Fn(&f64) -> String,
) -> Result<
    ChartContext<'a, DB, Cartesian2d<X::CoordDescType, plotters::coord::types::RangedCoordf64>>,
>
where
    X::CoordDescType: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let all: Vec<(f64, f64)> = lines
        .values()
        .flatten()
        .map(|(_, m, s)| {
            if s.is_finite() {
                (m - s, m + s)
            } else {
                (*m, *m)
            }
        })
        .collect();
    let lo = all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let hi = all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.12).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, text_style(17.0))
        .margin(12)
        .x_label_area_size(46)
        .y_label_area_size(58)
        .build_cartesian_2d(x_range, (lo - pad)..(hi + pad))
        .map_err(pe)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(x_fmt)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(text_style(13.0))
        .axis_desc_style(text_style(14.0))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(pe)?;
    for (method, pts) in lines {
        let colour = method_colour(method);
        if pts.len() > 1 && pts.iter().all(|p| p.2.is_finite()) {
            let mut band: Vec<(f64, f64)> = pts.iter().map(|(x, m, s)| (*x, m + s)).collect();
            band.extend(pts.iter().rev().map(|(x, m, s)| (*x, m - s)));
            chart
                .draw_series(std::iter::once(Polygon::new(band, colour.mix(0.18))))
                .map_err(pe)?;
        }
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.1)),
                colour.stroke_width(2),
            ))
            .map_err(pe)?
            .label(method_label(method))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(
                pts.iter()
                    .map(|p| Circle::new((p.0, p.1), 4, colour.filled())),
            )
            .map_err(pe)?;
    }
    Ok(chart)
}

fn finish_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .label_font(text_style(13.0))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .position(position)
        .draw()
        .map_err(pe)
}

fn fmt_size(x: &f64) -> String {
    if *x >= 1000.0 {
        format!("{}k", (x / 100.0).round() / 10.0)
    } else {
        format!("{x:.0}")
    }
}

impl SizeFig {
    fn title(&self) -> String {
        format!(
            "Fig. 2 · dev score vs training-set size — {} (±1 std over seeds)",
            self.model
        )
    }
}

impl Draw for SizeFig {
    fn size(&self) -> (u32, u32) {
        panels_size(self.panels.len())
    }
    fn header(&self) -> Option<[String; 3]> {
        Some(header_lines(self.title(), &self.protocol, &self.note))
    }
    fn draw<DB: DrawingBackend>(&self, body: &DrawingArea<DB, Shift>) -> Result<()> {
        let areas = body.split_evenly(panel_grid(self.panels.len()));
        for (area, (task, metric, lines)) in areas.iter().zip(&self.panels) {
            let xs: Vec<f64> = lines.values().flatten().map(|p| p.0).collect();
            let (x0, x1) = (
                xs.iter().copied().fold(f64::INFINITY, f64::min),
                xs.iter().copied().fold(0.0, f64::max),
            );
            // ticks at the measured sizes (a log axis's own ticks are the powers of ten only, which
            // would leave SQuAD's 300 and 3,000 unlabelled)
            let mut sizes = xs;
            sizes.sort_by(f64::total_cmp);
            sizes.dedup();
            // a log axis padded by a factor 1.3 each side
            let (lo, hi) = (x0 / 1.3, x1 * 1.3);
            let range = (lo..hi).log_scale().with_key_points(sizes);
            let (lx0, lx1) = (lo.ln(), hi.ln());
            let y_desc = format!("dev {metric} ×100");
            let caption = format!("{task} · {metric}");
            let mut chart = draw_lines(
                area,
                &caption,
                range,
                lines,
                ("training examples (log scale)", &y_desc),
                &fmt_size,
            )?;
            if let (Some(b), Some(f)) = (lines.get("bitfit"), lines.get("full_ft")) {
                let common: Vec<(f64, f64, f64)> = b
                    .iter()
                    .filter_map(|(x, bm, _)| {
                        f.iter()
                            .find(|p| (p.0 - x).abs() < 0.5)
                            .map(|p| (*x, *bm, p.1))
                    })
                    .collect();
                let xs: Vec<f64> = common.iter().map(|c| c.0).collect();
                let note = match crossing(
                    &xs,
                    &common.iter().map(|c| c.1).collect::<Vec<_>>(),
                    &common.iter().map(|c| c.2).collect::<Vec<_>>(),
                ) {
                    Some(xc) => {
                        let (y0, y1) = (chart.y_range().start, chart.y_range().end);
                        chart
                            .draw_series(DashedLineSeries::new(
                                vec![(xc, y0), (xc, y1)],
                                6,
                                4,
                                BLACK.stroke_width(1),
                            ))
                            .map_err(pe)?;
                        format!("BitFit = Full-FT at ≈{} examples", fmt_size(&xc))
                    }
                    None if common.len() >= 2 => {
                        let ahead = if common[0].1 > common[0].2 {
                            "BitFit"
                        } else {
                            "Full-FT"
                        };
                        format!("no crossing: {ahead} ahead at every size")
                    }
                    None => String::new(),
                };
                if !note.is_empty() {
                    let (x0, _) = (chart.x_range().start, chart.x_range().end);
                    let y1 = chart.y_range().end;
                    chart
                        .draw_series(std::iter::once(Text::new(
                            note,
                            (x0 * 1.05, y1),
                            text_style(13.0).pos(Pos::new(HPos::Left, VPos::Top)),
                        )))
                        .map_err(pe)?;
                }
            }
            // the legend goes where it hides no point (SQuAD's BitFit line falls to the lower right)
            let (y0, y1) = (chart.y_range().start, chart.y_range().end);
            let unit: Vec<Vec<(f64, f64)>> = lines
                .values()
                .map(|pts| {
                    pts.iter()
                        .map(|(x, m, _)| ((x.ln() - lx0) / (lx1 - lx0), (m - y0) / (y1 - y0)))
                        .collect()
                })
                .collect();
            finish_legend(&mut chart, legend_corner(&unit).position())?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- learning curves

struct CurveFig {
    model: String,
    protocol: String,
    note: String,
    /// (panel title, task, method → points (epoch, mean, std))
    panels: Vec<(String, String, Lines)>,
}

impl CurveFig {
    fn title(&self) -> String {
        format!(
            "Learning curves — {}: dev score per epoch at each method's selected lr (±1 std)",
            self.model
        )
    }
}

impl Draw for CurveFig {
    fn size(&self) -> (u32, u32) {
        panels_size(self.panels.len())
    }
    fn header(&self) -> Option<[String; 3]> {
        Some(header_lines(self.title(), &self.protocol, &self.note))
    }
    fn draw<DB: DrawingBackend>(&self, body: &DrawingArea<DB, Shift>) -> Result<()> {
        let areas = body.split_evenly(panel_grid(self.panels.len()));
        for (area, (caption, task, lines)) in areas.iter().zip(&self.panels) {
            let e1 = lines.values().flatten().map(|p| p.0).fold(1.0, f64::max);
            let y_desc = format!("dev {} ×100", headline_label(task));
            let mut chart = draw_lines(
                area,
                caption,
                0.7..(e1 + 0.3),
                lines,
                ("epoch", &y_desc),
                &|x| {
                    if (x - x.round()).abs() < 1e-6 {
                        format!("{x:.0}")
                    } else {
                        String::new()
                    }
                },
            )?;
            finish_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- parameters vs score

/// One method's point: mean trainable share (%), average score over the common tasks, the mean
/// of their per-task stds.
struct ParamPoint {
    method: String,
    pct: f64,
    score: f64,
    std: f64,
}

struct ParamsFig {
    model: String,
    protocol: String,
    note: String,
    size: i64,
    points: Vec<ParamPoint>,
}

impl ParamsFig {
    fn title(&self) -> String {
        format!(
            "Trainable parameters vs score — {} · {} training examples",
            self.model,
            super::size_label(self.size)
        )
    }
}

impl Draw for ParamsFig {
    fn size(&self) -> (u32, u32) {
        (860, 560)
    }
    fn header(&self) -> Option<[String; 3]> {
        Some(header_lines(self.title(), &self.protocol, &self.note))
    }
    fn draw<DB: DrawingBackend>(&self, body: &DrawingArea<DB, Shift>) -> Result<()> {
        let xs = self.points.iter().map(|p| p.pct.max(1e-4));
        let (x0, x1) = xs.fold((f64::INFINITY, 0f64), |(a, b), x| (a.min(x), b.max(x)));
        let spread = |p: &ParamPoint| if p.std.is_finite() { p.std } else { 0.0 };
        let lo = self
            .points
            .iter()
            .map(|p| p.score - spread(p))
            .fold(f64::INFINITY, f64::min);
        let hi = self
            .points
            .iter()
            .map(|p| p.score + spread(p))
            .fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.15).max(1.0);
        let mut chart = ChartBuilder::on(body)
            .margin(14)
            .x_label_area_size(46)
            .y_label_area_size(58)
            .build_cartesian_2d(((x0 / 3.0)..(x1 * 3.0)).log_scale(), (lo - pad)..(hi + pad))
            .map_err(pe)?;
        chart
            .configure_mesh()
            .x_desc("trainable parameters, % of the model (log scale)")
            .y_desc("average dev score ×100 (headline metrics)")
            .x_label_formatter(&|x| {
                let m = x / 10f64.powf(x.log10().floor());
                if (m - 1.0).abs() < 1e-6 {
                    format!("{x}")
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style(text_style(13.0))
            .axis_desc_style(text_style(14.0))
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(pe)?;
        for p in &self.points {
            let colour = method_colour(&p.method);
            let x = p.pct.max(1e-4);
            if p.std.is_finite() {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(x, p.score - p.std), (x, p.score + p.std)],
                        colour.stroke_width(2),
                    )))
                    .map_err(pe)?;
            }
            chart
                .draw_series(std::iter::once(Circle::new(
                    (x, p.score),
                    6,
                    colour.filled(),
                )))
                .map_err(pe)?
                .label(format!("{} ({:.1})", method_label(&p.method), p.score))
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, colour.filled()));
        }
        // BitFit on top, ringed: another method of the same size (rand_row_col, rand_uniform)
        // can land on the very same spot and would hide the paper's method
        for p in self.points.iter().filter(|p| p.method == "bitfit") {
            let at = (p.pct.max(1e-4), p.score);
            let colour = method_colour(&p.method);
            chart
                .draw_series([
                    Circle::new(at, 6, colour.filled()),
                    Circle::new(at, 8, BLACK.stroke_width(2)),
                ])
                .map_err(pe)?;
        }
        finish_legend(&mut chart, SeriesLabelPosition::LowerRight)
    }
}

/// Parameters-vs-score points per (setting, training size): every method with cells on all of
/// the tasks the block's methods share, at least three methods.
fn params_points(best: &BestCells) -> Vec<(Setting, i64, Vec<String>, Vec<ParamPoint>)> {
    type Block<'a> = BTreeMap<&'a str, BTreeMap<&'a str, &'a super::Cell>>;
    let mut blocks: BTreeMap<(Setting, i64), Block> = BTreeMap::new();
    for (k, c) in best.iter().filter(|(_, c)| c.mean.is_finite()) {
        blocks
            .entry((k.setting(), k.train_size))
            .or_default()
            .entry(k.method.as_str())
            .or_default()
            .insert(k.task.as_str(), c);
    }
    let mut out = Vec::new();
    for ((setting, size), methods) in blocks {
        if methods.len() < 3 {
            continue;
        }
        let mut tasks: Vec<&str> = methods
            .values()
            .next()
            .map(|t| t.keys().copied().collect())
            .unwrap_or_default();
        tasks.retain(|t| methods.values().all(|m| m.contains_key(t)));
        if tasks.is_empty() {
            continue;
        }
        let mut points: Vec<ParamPoint> = methods
            .iter()
            .map(|(m, cells)| {
                let cs: Vec<&super::Cell> = tasks.iter().map(|t| cells[t]).collect();
                let n = cs.len() as f64;
                let stds: Vec<f64> = cs.iter().map(|c| c.std).filter(|s| s.is_finite()).collect();
                ParamPoint {
                    method: m.to_string(),
                    pct: cs.iter().map(|c| c.param_pct).sum::<f64>() / n,
                    score: cs.iter().map(|c| c.mean).sum::<f64>() / n,
                    std: if stds.is_empty() {
                        f64::NAN
                    } else {
                        stds.iter().sum::<f64>() / stds.len() as f64
                    },
                }
            })
            .collect();
        points.sort_by_key(|p| method_rank(&p.method));
        out.push((
            setting,
            size,
            tasks.iter().map(|t| t.to_string()).collect(),
            points,
        ));
    }
    out
}

// ---------------------------------------------------------------- generalization gap

struct GapFig<'a> {
    model: String,
    protocol: String,
    tasks: Vec<String>,
    methods: Vec<String>,
    gaps: BTreeMap<(String, String), &'a Gap>,
}

const GAP_NOTE: &str = "each run's single best epoch (best on the headline dev metric); diverged and degenerate runs left out";

impl GapFig<'_> {
    fn title(&self) -> String {
        format!(
            "Generalization gap — {}: train − dev score at the best epoch (±1 std)",
            self.model
        )
    }
}

impl Draw for GapFig<'_> {
    fn size(&self) -> (u32, u32) {
        (
            (260 + self.tasks.len() as u32 * 60 * self.methods.len() as u32).clamp(720, 1400),
            500,
        )
    }
    fn header(&self) -> Option<[String; 3]> {
        Some(header_lines(self.title(), &self.protocol, GAP_NOTE))
    }
    fn draw<DB: DrawingBackend>(&self, body: &DrawingArea<DB, Shift>) -> Result<()> {
        let stats: BTreeMap<(String, String), (f64, f64, usize)> = self
            .gaps
            .iter()
            .map(|(k, g)| {
                let (m, s) = mean_std(&g.gaps());
                (k.clone(), (m, s, g.train.len()))
            })
            .collect();
        let hi = stats
            .values()
            .map(|(m, s, _)| m + if s.is_finite() { *s } else { 0.0 })
            .fold(0.0, f64::max);
        let lo = stats
            .values()
            .map(|(m, s, _)| m - if s.is_finite() { *s } else { 0.0 })
            .fold(0.0, f64::min);
        let pad = ((hi - lo) * 0.15).max(1.0);
        let n = self.tasks.len();
        let mut chart = ChartBuilder::on(body)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(62)
            .build_cartesian_2d(
                -0.5..(n as f64 - 0.5),
                (lo - if lo < 0.0 { pad } else { 0.0 })..(hi + pad),
            )
            .map_err(pe)?;
        let tasks = &self.tasks;
        let x_fmt = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                tasks.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n + 1)
            .x_label_formatter(&x_fmt)
            .y_desc("train − dev score (×100)")
            .x_desc("task (headline metric: CoLA MCC, MRPC F1, STS-B Spearman, else accuracy)")
            .label_style(text_style(14.0))
            .axis_desc_style(text_style(14.0))
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(pe)?;
        let k = self.methods.len() as f64;
        let w = 0.8 / k;
        for (j, method) in self.methods.iter().enumerate() {
            let colour = method_colour(method);
            let mut bars = Vec::new();
            let mut labels = Vec::new();
            let mut whiskers = Vec::new();
            for (i, task) in tasks.iter().enumerate() {
                let Some((m, s, n)) = stats.get(&(task.clone(), method.clone())) else {
                    continue;
                };
                let x0 = i as f64 - 0.4 + j as f64 * w;
                bars.push(Rectangle::new(
                    [(x0 + 0.01, 0.0), (x0 + w - 0.01, *m)],
                    colour.filled(),
                ));
                let top = if s.is_finite() { m + s } else { *m };
                if s.is_finite() {
                    whiskers.push(PathElement::new(
                        vec![(x0 + w / 2.0, m - s), (x0 + w / 2.0, m + s)],
                        BLACK.stroke_width(1),
                    ));
                }
                labels.push(Text::new(
                    format!("{m:.1} (n={n})"),
                    (x0 + w / 2.0, top.max(0.0)),
                    text_style(12.0).pos(Pos::new(HPos::Center, VPos::Bottom)),
                ));
            }
            chart
                .draw_series(bars)
                .map_err(pe)?
                .label(method_label(method))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled())
                });
            chart.draw_series(whiskers).map_err(pe)?;
            chart.draw_series(labels).map_err(pe)?;
        }
        finish_legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

/// Method order in legends and bars: the paper's ([`PAPER_METHODS`]: Full-FT, BitFit, then
/// Table 3's order), then the others by spelling.
fn method_rank(m: &str) -> (usize, String) {
    (
        PAPER_METHODS
            .iter()
            .position(|p| p.spelling == m)
            .unwrap_or(PAPER_METHODS.len()),
        m.to_string(),
    )
}

/// Draw every figure the data supports. Fig. 2 plots the table cells (`best`) and the learning
/// curves the runs those cells average, both as `rules` made them; the gap reads each run's
/// single best epoch.
pub fn all(
    heat: &[HeatMap],
    best: &BestCells,
    curves: &[Curve],
    gaps: &[Gap],
    rules: &Rules,
) -> Result<Figures> {
    use std::collections::BTreeSet;
    let mut figures = Vec::new();
    let mut skipped = Vec::new();
    // file stems name the model, plus a protocol tag when the model ran under several protocols
    let mut protocols: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (m, p) in heat
        .iter()
        .map(|h| &h.key)
        .chain(best.keys())
        .chain(curves.iter().map(|c| &c.key))
        .chain(gaps.iter().map(|g| &g.key))
        .map(|k| (&k.model, &k.protocol))
    {
        protocols.entry(m.as_str()).or_default().insert(p.as_str());
    }
    let stem = |model: &str, protocol: &str| {
        if protocols.get(model).is_some_and(|p| p.len() > 1) {
            use sha2::Digest;
            format!(
                "{}_{}",
                slug(model),
                &hex::encode(sha2::Sha256::digest(protocol.as_bytes()))[..8]
            )
        } else {
            slug(model)
        }
    };
    for h in heat {
        let k = &h.key;
        let name = format!(
            "fig1_bias_change_{}_{}_{}",
            stem(&k.model, &k.protocol),
            slug(&k.task),
            slug(&k.method)
        );
        figures.push(render(name, &HeatFig::new(h))?);
    }
    if heat.is_empty() {
        skipped.push("fig1_bias_change: no run trained any bias vector".into());
    }

    // Fig. 2: tasks with at least two training sizes for some method; setting → (task, metric)
    // → lines, each line's points in training-size order. A panel per task for its headline
    // metric; SQuAD (the paper's Fig. 2: exact match) gets a second panel for F1.
    type PanelKey<'k> = (&'k str, usize, &'static str);
    let mut by_setting: BTreeMap<Setting, BTreeMap<PanelKey, Lines>> = BTreeMap::new();
    for (key, c) in best.iter().filter(|(_, c)| c.mean.is_finite()) {
        let mut points = vec![(0, headline_label(&key.task), c.mean, c.std)];
        if key.task == "SQuAD"
            && let Some(&f1) = c.secondary.get("f1")
        {
            let std = c.secondary_std.get("f1").copied().unwrap_or(f64::NAN);
            points.push((1, "F1", f1, std));
        }
        for (order, metric, mean, std) in points {
            by_setting
                .entry(key.setting())
                .or_default()
                .entry((&key.task, order, metric))
                .or_default()
                .entry(key.method.clone())
                .or_default()
                .push((c.examples, mean, std));
        }
    }
    for (Setting { model, protocol }, tasks) in by_setting {
        let panels: Vec<(String, String, Lines)> = tasks
            .into_iter()
            .filter(|(_, m)| m.values().any(|p| p.len() >= 2))
            .map(|((t, _, metric), mut m)| {
                m.retain(|_, p| p.len() >= 2);
                m.values_mut()
                    .for_each(|p| p.sort_by(|a, b| a.0.total_cmp(&b.0)));
                (t.to_string(), metric.to_string(), m)
            })
            .collect();
        if panels.is_empty() {
            skipped.push(format!("fig2_train_size ({model}; {protocol}): no task ran at two or more training-set sizes"));
            continue;
        }
        let note = format!("points = the tables' cells ({})", rules.short());
        let name = format!("fig2_train_size_{}", stem(&model, &protocol));
        let fig = SizeFig {
            model,
            protocol,
            note,
            panels,
        };
        figures.push(render(name, &fig)?);
    }

    // parameters vs score: one figure per (setting, training size) with three or more methods
    for (Setting { model, protocol }, size, tasks, points) in params_points(best) {
        let note = format!(
            "table cells averaged over {} ({}); bars: mean per-task std",
            tasks.join(", "),
            rules.short()
        );
        let name = format!(
            "params_vs_score_{}_{}",
            stem(&model, &protocol),
            super::size_label(size)
        );
        let fig = ParamsFig {
            model,
            protocol,
            note,
            size,
            points,
        };
        figures.push(render(name, &fig)?);
    }

    // learning curves: one panel per (task, train size), lines per method
    let mut by_setting: BTreeMap<Setting, BTreeMap<(&str, i64), Lines>> = BTreeMap::new();
    for c in curves {
        let pts = c
            .points
            .iter()
            .map(|(e, m, s, _)| (*e as f64, *m, *s))
            .collect();
        by_setting
            .entry(c.key.setting())
            .or_default()
            .entry((&c.key.task, c.key.train_size))
            .or_default()
            .insert(c.key.method.clone(), pts);
    }
    for (Setting { model, protocol }, panels) in by_setting {
        let panels = panels
            .into_iter()
            .map(|((task, size), m)| {
                (
                    format!("{task} · train size {}", super::size_label(size)),
                    task.to_string(),
                    m,
                )
            })
            .collect();
        let name = format!("learning_curves_{}", stem(&model, &protocol));
        let degen = if rules.exclude_degenerate {
            "degenerate runs left out"
        } else {
            "degenerate runs included"
        };
        let note = format!(
            "every epoch (no best-epoch choice), over the runs the table cell averages: {degen}, diverged runs left out"
        );
        figures.push(render(
            name,
            &CurveFig {
                model,
                protocol,
                note,
                panels,
            },
        )?);
    }

    // generalization gap
    let mut by_setting: BTreeMap<Setting, Vec<&Gap>> = BTreeMap::new();
    for g in gaps {
        by_setting.entry(g.key.setting()).or_default().push(g);
    }
    for (Setting { model, protocol }, gs) in by_setting {
        // categories: task, or task · size when a task ran at several sizes
        let mut cats: Vec<(usize, i64, String)> = gs
            .iter()
            .map(|g| {
                (
                    super::PAPER_TASKS
                        .iter()
                        .position(|p| *p == g.key.task)
                        .unwrap_or(99),
                    g.key.train_size,
                    g.key.task.clone(),
                )
            })
            .collect();
        cats.sort();
        cats.dedup();
        let several = |t: &str| cats.iter().filter(|c| c.2 == t).count() > 1;
        let label = |task: &str, size: i64| {
            if several(task) {
                format!(
                    "{task} · {}",
                    if size == 0 {
                        "all".to_string()
                    } else {
                        fmt_size(&(size as f64))
                    }
                )
            } else {
                task.to_string()
            }
        };
        let tasks: Vec<String> = cats.iter().map(|(_, size, t)| label(t, *size)).collect();
        let mut methods: Vec<String> = gs.iter().map(|g| g.key.method.clone()).collect();
        methods.sort_by_key(|m| method_rank(m));
        methods.dedup();
        let gaps = gs
            .iter()
            .map(|g| {
                (
                    (label(&g.key.task, g.key.train_size), g.key.method.clone()),
                    *g,
                )
            })
            .collect();
        let name = format!("generalization_gap_{}", stem(&model, &protocol));
        figures.push(render(
            name,
            &GapFig {
                model,
                protocol,
                tasks,
                methods,
                gaps,
            },
        )?);
    }
    if gaps.is_empty() {
        skipped.push("generalization_gap: no run recorded train-set metrics".into());
    }
    Ok(Figures { figures, skipped })
}
