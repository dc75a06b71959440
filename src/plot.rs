//! `basis train plot RUN_DIR`: a run's mean reward per skill against the step,
//! and beside it the validation score of a run with `--eval-every` (marked at
//! each step it was scored), drawn with plotters into `RUN_DIR/rewards.svg`
//! and `RUN_DIR/rewards.png`.
//!
//! Text needs a font: plotters' `ab_glyph` backend draws with one registered at
//! run time, taken from the usual system places (DejaVu Sans, Liberation Sans,
//! …, or `BASIS_PLOT_FONT`). Without one the curves are drawn with no labels and
//! the command says so.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plotters::prelude::*;

/// Fonts tried in order when `BASIS_PLOT_FONT` is not set.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// Registers a system font as plotters' "sans-serif"; false when none is found.
fn register_font() -> bool {
    let from_env = std::env::var_os("BASIS_PLOT_FONT").map(PathBuf::from);
    for path in from_env
        .iter()
        .map(PathBuf::as_path)
        .chain(FONTS.iter().map(Path::new))
    {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        // plotters keeps the font for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
            return true;
        }
    }
    false
}

/// Each skill's reward per step: (skill, [(step, reward)]).
pub type Curves = Vec<(String, Vec<(f64, f64)>)>;

/// The name of the validation curve.
const VALIDATION: &str = "validation";

/// The reward curves of a run's metrics (plus the mean over skills, and the
/// validation score where the run has one).
pub fn curves(run: &Path) -> Result<Curves> {
    let lines = basis_trainer::train::read_metrics(run)
        .with_context(|| format!("reading the metrics of {}", run.display()))?;
    let validation = basis_trainer::validation::read(run)
        .with_context(|| format!("reading the metrics of {}", run.display()))?;
    if lines.is_empty() && validation.is_empty() {
        bail!("{} has no metrics yet", run.join("metrics.jsonl").display());
    }
    let mut per_skill: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    let mut mean = Vec::new();
    for m in &lines {
        let step = m["step"].as_f64().unwrap_or(0.0);
        if let Some(obj) = m["reward_per_skill"].as_object() {
            for (skill, r) in obj {
                if let Some(r) = r.as_f64() {
                    per_skill.entry(skill.clone()).or_default().push((step, r));
                }
            }
        }
        if let Some(r) = m["reward"].as_f64() {
            mean.push((step, r));
        }
    }
    let mut out: Curves = basis_skills::SkillId::ALL
        .iter()
        .filter_map(|s| {
            per_skill
                .remove(s.as_str())
                .map(|c| (s.as_str().to_string(), c))
        })
        .collect();
    out.push(("mean".into(), mean));
    if !validation.is_empty() {
        let points = validation
            .iter()
            .map(|p| (p.step as f64, p.score))
            .collect();
        out.push((VALIDATION.into(), points));
    }
    Ok(out)
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    curves: &Curves,
    labels: bool,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let last = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let mut builder = ChartBuilder::on(&root);
    builder.margin(16);
    if labels {
        builder
            .caption(
                if curves.iter().any(|(n, _)| n == VALIDATION) {
                    "training reward per skill, and the validation score"
                } else {
                    "reward per skill"
                },
                ("sans-serif", 22),
            )
            .x_label_area_size(36)
            .y_label_area_size(44);
    }
    let mut chart = builder
        .build_cartesian_2d(0.0..last, 0.0..1.0f64)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut mesh = chart.configure_mesh();
    if labels {
        mesh.x_desc("step").y_desc("mean reward");
    } else {
        mesh.disable_x_mesh()
            .disable_y_mesh()
            .x_labels(0)
            .y_labels(0);
    }
    mesh.draw().map_err(|e| anyhow::anyhow!("{e}"))?;
    for (i, (name, points)) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = match name.as_str() {
            "mean" => BLACK.stroke_width(3),
            // Scored every few steps: its points marked.
            VALIDATION => RED.stroke_width(3),
            _ => color.stroke_width(2),
        };
        let marks = if name == VALIDATION { 4 } else { 0 };
        let series = chart
            .draw_series(LineSeries::new(points.iter().copied(), style).point_size(marks))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if labels {
            series
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
    }
    if labels {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Draws a run's reward curves (see the module docs).
pub fn rewards(run: &Path) -> Result<()> {
    let c = curves(run)?;
    let labels = register_font();
    if !labels {
        eprintln!(
            "warning: no font found (set BASIS_PLOT_FONT to a .ttf file); drawing the curves without labels"
        );
    }
    let svg = run.join("rewards.svg");
    let png = run.join("rewards.png");
    draw(
        SVGBackend::new(&svg, (900, 540)).into_drawing_area(),
        &c,
        labels,
    )
    .with_context(|| format!("drawing {}", svg.display()))?;
    draw(
        BitMapBackend::new(&png, (900, 540)).into_drawing_area(),
        &c,
        labels,
    )
    .with_context(|| format!("drawing {}", png.display()))?;
    use std::io::Write;
    writeln!(
        std::io::stdout().lock(),
        "{}\n{}",
        svg.display(),
        png.display()
    )?;
    Ok(())
}
