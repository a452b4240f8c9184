//! `swarm-sim [SCENARIO...] [--seed N] [--csv DIR]`: runs scenarios (names
//! of `scenarios/*.toml`, or paths; all shipped ones when none is named),
//! each in a child process of its own so that its peak memory is its own,
//! prints each run's report, then a table, then one JSON line per scenario.

use anyhow::{bail, Context};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;
use swarm_sim::report::{self, SHIPPED, TABLE_HEAD};
use swarm_sim::{scenario, sim};

struct Args {
    names: Vec<String>,
    seed: Option<u64>,
    csv: Option<String>,
    child: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        names: Vec::new(),
        seed: None,
        csv: None,
        child: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--seed" => a.seed = Some(it.next().context("--seed N")?.parse()?),
            "--csv" => a.csv = Some(it.next().context("--csv DIR")?),
            "--child" => a.child = true,
            "-h" | "--help" => {
                println!(
                    "usage: swarm-sim [SCENARIO...] [--seed N] [--csv DIR]\nscenarios: {}",
                    SHIPPED.join(", ")
                );
                std::process::exit(0);
            }
            s if s.starts_with('-') => bail!("unknown option {s}"),
            s => a.names.push(s.to_owned()),
        }
    }
    if a.names.is_empty() {
        a.names = SHIPPED.iter().map(|s| s.to_string()).collect();
    }
    Ok(a)
}

/// Runs one scenario here: the report, then `ROW` and `JSON` lines.
fn child(a: &Args) -> anyhow::Result<()> {
    let mut sc = scenario::find(&a.names[0])?;
    if let Some(s) = a.seed {
        sc.seed = s;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", report::header(&sc))?;
    out.flush()?;
    let t = Instant::now();
    let o = sim::run(
        &sc,
        sim::Options {
            csv: a.csv.is_some(),
            record_pairs: false,
        },
    );
    let wall = t.elapsed().as_secs_f64();
    let rss = report::peak_rss_mb();
    write!(out, "{}", report::details(&o.figures))?;
    if let (Some(dir), Some(csv)) = (&a.csv, &o.csv) {
        std::fs::create_dir_all(dir)?;
        let path = std::path::Path::new(dir).join(format!("{}.csv", sc.name));
        std::fs::write(&path, csv)?;
        writeln!(out, "  time series      {}", path.display())?;
    }
    writeln!(out, "  wall {wall:.1} s, peak RSS {rss:.0} MB")?;
    writeln!(
        out,
        "ROW {}",
        report::table_row(&sc.name, &o.figures, wall, rss)
    )?;
    writeln!(
        out,
        "JSON {}",
        report::json_line(&sc.name, &o.figures, wall, rss)
    )?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    if a.child {
        return child(&a);
    }
    let exe = std::env::current_exe()?;
    let (mut rows, mut jsons) = (Vec::new(), Vec::new());
    for name in &a.names {
        let mut cmd = Command::new(&exe);
        cmd.arg("--child").arg(name);
        if let Some(s) = a.seed {
            cmd.arg("--seed").arg(s.to_string());
        }
        if let Some(d) = &a.csv {
            cmd.arg("--csv").arg(d);
        }
        let out = cmd.stderr(Stdio::inherit()).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            if let Some(r) = line.strip_prefix("ROW ") {
                rows.push(r.to_owned());
            } else if let Some(j) = line.strip_prefix("JSON ") {
                jsons.push(j.to_owned());
            } else {
                println!("{line}");
            }
        }
        if !out.status.success() {
            bail!("scenario {name} failed ({})", out.status);
        }
        println!();
    }
    println!("{TABLE_HEAD}");
    for r in rows {
        println!("{r}");
    }
    for j in jsons {
        println!("{j}");
    }
    Ok(())
}
