//! `overhead-chart LOG OUT.svg`: reads VINO's overhead table as the benchmark kernel printed it
//! on its real paths (`./run.sh bench`, `build/paths.log`) and draws it: for each column (RA,
//! VM, Sched, Encrypt), grouped bars per row (Indir, Begin, Graft, Commit, Abort, Total), ours
//! beside VINO's, on a log scale in nanoseconds (ours: guest instructions at one per ns under
//! `-icount`; VINO's microseconds times 1000).
use std::process::ExitCode;

use plotters::prelude::*;

const ROWS: [&str; 6] = ["Indir", "Begin", "Graft", "Commit", "Abort", "Total"];
const COLS: [&str; 4] = ["RA", "VM", "Sched", "Encrypt"];

/// One table cell: ours (instructions) and VINO's (microseconds), either may be missing.
type Cell = (Option<f64>, Option<f64>);

/// Parses the rows of the table: `Name  ours (vino)  ours (vino) ...`.
fn parse(log: &str) -> Vec<(String, Vec<Cell>)> {
    let mut rows = Vec::new();
    for line in log.lines() {
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else { continue };
        if !ROWS.contains(&name) {
            continue;
        }
        let rest: Vec<&str> = words.collect();
        let cells: Vec<Cell> = rest
            .chunks(2)
            .map(|c| {
                let ours = c.first().and_then(|v| v.trim_end_matches('*').parse::<f64>().ok());
                let vino = c.get(1).and_then(|v| v.trim_matches(|ch| ch == '(' || ch == ')').parse::<f64>().ok());
                (ours, vino)
            })
            .collect();
        if cells.len() == COLS.len() {
            rows.push((name.to_string(), cells));
        }
    }
    rows
}

fn draw(rows: &[(String, Vec<Cell>)], out: &str) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(out, (1200, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((2, 2));
    for (c, area) in areas.iter().enumerate() {
        let n = rows.len() as f64;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{} (ns per call, log scale)", COLS[c]), ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n, (1f64..1e7f64).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(rows.len())
            .x_label_formatter(&|x| rows.get(*x as usize).map_or(String::new(), |r| r.0.clone()))
            .y_desc("ns")
            .draw()?;
        let bar = |i: usize, v: f64, left: bool| {
            let x0 = i as f64 + if left { 0.15 } else { 0.5 };
            Rectangle::new([(x0, 1.0), (x0 + 0.35, v.max(1.0))], if left { BLUE.filled() } else { RED.filled() })
        };
        chart
            .draw_series(rows.iter().enumerate().filter_map(|(i, r)| r.1[c].0.map(|v| bar(i, v, true))))?
            .label("ours (guest instructions, 1 per ns)")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], BLUE.filled()));
        chart
            .draw_series(rows.iter().enumerate().filter_map(|(i, r)| r.1[c].1.map(|v| bar(i, v * 1000.0, false))))?
            .label("VINO 1996 (us x 1000)")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], RED.filled()));
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
    }
    root.present()?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(log), Some(out)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: overhead-chart LOG OUT.svg");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(log) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("overhead-chart: {log}: {e}");
            return ExitCode::from(1);
        }
    };
    let rows = parse(&text);
    if rows.is_empty() {
        eprintln!("overhead-chart: no table in {log}");
        return ExitCode::from(1);
    }
    if let Some(dir) = std::path::Path::new(out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match draw(&rows, out) {
        Ok(()) => {
            println!("overhead-chart: {out} ({} rows)", rows.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("overhead-chart: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_table_the_kernel_prints() {
        let log = "Indir                            48 (1)                         50 (1)                         48 (1)                         47 (0)\n\
                   Lock                      (above)* (33)                  (above)* (34)                  (above)* (33)                   (above)* (0)\n\
                   Total                       29242 (103)                     1812 (307)                      700 (142)                   135935 (417)\n";
        let rows = super::parse(log);
        assert_eq!(rows.len(), 2, "Lock is not drawn (not on a real path)");
        assert_eq!(rows[0].1[0], (Some(48.0), Some(1.0)));
        assert_eq!(rows[1].1[3], (Some(135935.0), Some(417.0)));
    }
}
