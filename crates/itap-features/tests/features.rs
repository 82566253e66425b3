//! What each feature means, checked on small hand-made and simulated series.

mod common;

use itap_features::ParamGuard;
use itap_features::{
    Error, FeatureKind, FeatureParams, FeaturesFit, PARQUET_CATALOGUE_KEY, TrainSpan, catalogue,
    fit, transform,
};
use itap_telemetry::{Batch, Schema, SimParams, State, simulate};

use common::{Row, S, T0, batch, close, row, same};

fn params(kinds: impl IntoIterator<Item = FeatureKind>) -> FeatureParams {
    FeatureParams::default().kinds(kinds).period("off")
}

fn run(b: &Batch, p: FeatureParams) -> itap_features::FeatureMatrix {
    let p = p.check().unwrap();
    transform(b, &fit(b, TrainSpan::All, &p).unwrap()).unwrap()
}

/// Brute force: statistics of the observed values of `dev`'s rows with timestamp in
/// (t - w, t] (time) or of its last `w` rows (rows).
fn reference(b: &Batch, sig: usize, r: usize, window: Result<i64, usize>, min: usize) -> [f64; 4] {
    let d = b.device_codes()[r];
    let t = b.timestamps()[r];
    let mut rows: Vec<usize> = (0..b.len())
        .filter(|&i| b.device_codes()[i] == d && b.timestamps()[i] <= t)
        .collect();
    rows.sort_by_key(|&i| (b.timestamps()[i], i));
    // Rows with the same timestamp as r are all "at or before t".
    let vals: Vec<f64> = match window {
        Ok(w) => rows
            .iter()
            .filter(|&&i| b.timestamps()[i] > t - w)
            .map(|&i| b.signal(sig)[i])
            .collect(),
        Err(n) => {
            let pos = rows.iter().rposition(|&i| b.timestamps()[i] == t).unwrap();
            rows[..=pos]
                .iter()
                .rev()
                .take(n)
                .map(|&i| b.signal(sig)[i])
                .collect()
        }
    };
    let obs: Vec<f64> = vals.into_iter().filter(|v| v.is_finite()).collect();
    if obs.len() < min.max(1) {
        return [f64::NAN; 4];
    }
    let n = obs.len() as f64;
    let mean = obs.iter().sum::<f64>() / n;
    let std = if obs.len() > 1 {
        (obs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        f64::NAN
    };
    let min_v = obs.iter().copied().fold(f64::INFINITY, f64::min);
    let max_v = obs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    [mean, std, min_v, max_v]
}

#[test]
fn time_windows_follow_time_under_irregular_sampling_and_gaps() {
    // Steps of 1–90 s (some longer than the window), two devices interleaved,
    // missing values.
    let mut rows = Vec::new();
    let mut state = 17u64;
    for d in 0..2 {
        let mut t = T0;
        for i in 0..300 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let step = 1 + (state >> 33) % 90;
            t += step as i64 * S;
            let v = if i % 17 == 5 {
                f64::NAN
            } else {
                ((state >> 11) % 1000) as f64 / 10.0
            };
            rows.push(row(t, &format!("m{d}"), &[v]));
        }
    }
    rows.sort_by_key(|r| r.ts);
    let b = batch(&["x"], &rows);
    let m = run(
        &b,
        params([
            FeatureKind::Mean,
            FeatureKind::Std,
            FeatureKind::Min,
            FeatureKind::Max,
        ])
        .windows(["1m", "4rows"])
        .min_periods(2),
    );
    for (w, label) in [(Ok(60 * S), "1m"), (Err(4), "4rows")] {
        for r in 0..b.len() {
            let want = reference(&b, 0, r, w, 2);
            for (k, stat) in ["mean", "std", "min", "max"].iter().enumerate() {
                let got = m.column_by_name(&format!("x__{stat}__{label}")).unwrap()[r];
                assert!(
                    close(got, want[k], 1e-9),
                    "x__{stat}__{label} row {r}: {got} vs {}",
                    want[k]
                );
            }
        }
    }
}

#[test]
fn delta_z_diff_and_rate() {
    let rows: Vec<Row> = [1.0, 3.0, 3.0, 7.0]
        .iter()
        .enumerate()
        .map(|(i, &v)| row(T0 + 20 * S * i as i64, "a", &[v, 5.0]))
        .collect();
    let b = batch(&["x", "flat"], &rows);
    let m = run(
        &b,
        params([
            FeatureKind::Delta,
            FeatureKind::Z,
            FeatureKind::Diff,
            FeatureKind::Rate,
        ])
        .windows(["3rows"]),
    );
    let col = |n: &str| m.column_by_name(n).unwrap().to_vec();
    // Row 3: window 3, 3, 7: mean 13/3, std sqrt(16/3).
    let (mean, std) = (13.0 / 3.0, (16.0f64 / 3.0).sqrt());
    assert!(close(col("x__delta__3rows")[3], 7.0 - mean, 1e-12));
    assert!(close(col("x__z__3rows")[3], (7.0 - mean) / std, 1e-12));
    // A constant signal has z 0, not NaN or infinity; so does a lone observation.
    assert!(col("flat__z__3rows").iter().all(|&z| z == 0.0));
    assert_eq!(col("x__z__3rows")[0], 0.0);
    assert!(col("x__diff")[0].is_nan());
    assert_eq!(col("x__diff")[1..], [2.0, 0.0, 4.0]);
    assert_eq!(col("x__rate")[1..], [0.1, 0.0, 0.2]);
}

#[test]
fn missing_values_are_carried_forward_within_a_bound_and_never_hidden() {
    let vals = [1.0, f64::NAN, f64::NAN, f64::NAN, 4.0];
    let rows: Vec<Row> = vals
        .iter()
        .enumerate()
        .map(|(i, &v)| row(T0 + 10 * S * i as i64, "a", &[v]))
        .collect();
    let b = batch(&["x"], &rows);
    let m = run(
        &b,
        params([
            FeatureKind::Missing,
            FeatureKind::MissingRun,
            FeatureKind::Diff,
        ])
        .fill_limit("20s"),
    );
    assert_eq!(
        m.column_by_name("x__missing").unwrap(),
        [0.0, 1.0, 1.0, 1.0, 0.0]
    );
    assert_eq!(
        m.column_by_name("x__missing_run").unwrap(),
        [0.0, 1.0, 2.0, 3.0, 0.0]
    );
    let diff = m.column_by_name("x__diff").unwrap();
    // Rows 1 and 2 carry 1.0 forward (10 s, 20 s old); row 3 is 30 s old: NaN.
    assert_eq!(diff[1..3], [0.0, 0.0]);
    assert!(diff[3].is_nan() && diff[4].is_nan());
}

#[test]
fn state_baselines_are_learned_on_the_training_span_and_applied_per_state() {
    // RUN at level 100, IDLE at level 10, alternating every 20 rows, small noise.
    let mut rows = Vec::new();
    for i in 0..400i64 {
        let idle = (i / 20) % 2 == 1;
        let noise = ((i * 7919) % 11) as f64 / 10.0 - 0.5;
        let level = if idle { 10.0 } else { 100.0 };
        let mut r = row(T0 + i * 10 * S, "a", &[level + noise]);
        r.state = if idle { State::Idle } else { State::Run };
        rows.push(r);
    }
    // After the training span, an IDLE row at the RUN level: a large deviation.
    rows[390].values[0] = 100.0;
    assert_eq!(rows[390].state, State::Idle);
    let b = batch(&["x"], &rows);
    let p = params([FeatureKind::StateDev]).check().unwrap();
    let cut = T0 + 300 * 10 * S;
    let fitted = fit(&b, TrainSpan::Until(cut), &p).unwrap();
    let base = &fitted.devices()[0];
    let idle = base
        .baselines
        .iter()
        .find(|b| b.state == Some(State::Idle))
        .unwrap();
    assert!((idle.location[0].unwrap() - 10.0).abs() < 0.2, "{idle:?}");
    assert_eq!(fitted.train_rows(), 301);
    let dev = transform(&b, &fitted).unwrap();
    let dev = dev.column_by_name("x__state_dev").unwrap();
    assert!(
        dev[..380].iter().all(|d| d.abs() < 3.0),
        "normal rows stay near 0"
    );
    assert!(dev[390] > 50.0, "{}", dev[390]);
    // A fit on a different later part gives the same baselines.
    let mut changed = rows.clone();
    for r in &mut changed[301..] {
        r.values[0] = -1e6;
    }
    let refit = fit(&batch(&["x"], &changed), TrainSpan::Until(cut), &p).unwrap();
    assert_eq!(refit, fitted);
}

#[test]
fn unseen_devices_and_states_fall_back_to_pooled_baselines() {
    let mut rows = Vec::new();
    for i in 0..60i64 {
        rows.push(row(T0 + i * 10 * S, "seen", &[50.0 + (i % 5) as f64]));
    }
    let b = batch(&["x"], &rows);
    let p = params([FeatureKind::StateDev]).check().unwrap();
    let fitted = fit(&b, TrainSpan::All, &p).unwrap();
    let mut new_rows = vec![row(T0, "new", &[52.0])];
    new_rows[0].state = State::Maint;
    let m = transform(&batch(&["x"], &new_rows), &fitted).unwrap();
    assert_eq!(
        m.column(0)[0],
        0.0,
        "the pooled RUN/all baseline: median 52"
    );
}

#[test]
fn a_daily_like_cycle_is_detected_on_the_training_span_and_removed() {
    // 12 h at 30 s of a 1 h cycle plus a little noise, two devices.
    let mut rows = Vec::new();
    for d in 0..2 {
        for i in 0..1440i64 {
            let t = T0 + i * 30 * S;
            let phase = (t.rem_euclid(3600 * S)) as f64 / (3600 * S) as f64;
            let noise = ((i * 7919 + d * 31) % 13) as f64 / 13.0 - 0.5;
            let v = 20.0 + 5.0 * (std::f64::consts::TAU * phase).sin() + 0.2 * noise;
            rows.push(row(t, &format!("d{d}"), &[v]));
        }
    }
    let b = batch(&["x"], &rows);
    let p = FeatureParams::default()
        .kinds([
            FeatureKind::Seasonal,
            FeatureKind::Resid,
            FeatureKind::Trend,
        ])
        .check()
        .unwrap();
    let fitted = fit(&b, TrainSpan::Fraction(0.5), &p).unwrap();
    let s = &fitted.seasonal()[0];
    assert_eq!(
        s.period_us,
        Some(3600 * S),
        "{}",
        itap_features::describe_period(s)
    );
    assert!(s.strength > 0.9);
    let m = transform(&b, &fitted).unwrap();
    let resid = m.column_by_name("x__resid").unwrap();
    let late: Vec<f64> = resid[1000..]
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let rms = (late.iter().map(|v| v * v).sum::<f64>() / late.len() as f64).sqrt();
    assert!(
        rms < 0.5,
        "the residual is the noise, not the 5-unit cycle: {rms}"
    );
    // Trend is the level without the cycle (once the EW mean has warmed up: each
    // device's first 200 rows are left out).
    let trend = m.column_by_name("x__trend__10m").unwrap();
    let worst = trend
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 1440 >= 200)
        .map(|(_, t)| (t - 20.0).abs())
        .fold(0.0, f64::max);
    assert!(worst < 0.3, "{worst}");
    // Noise has no period; with period off there is none either.
    let off = fit(
        &b,
        TrainSpan::All,
        &p.params().clone().period("off").check().unwrap(),
    )
    .unwrap();
    assert_eq!(off.seasonal()[0].period_us, None);
    let flat: Vec<Row> = (0..1440i64)
        .map(|i| row(T0 + i * 30 * S, "d", &[((i * 7919) % 13) as f64]))
        .collect();
    let none = fit(&batch(&["x"], &flat), TrainSpan::All, &p).unwrap();
    assert_eq!(
        none.seasonal()[0].period_us,
        None,
        "{:?}",
        none.seasonal()[0]
    );
}

#[test]
fn a_control_chart_sees_a_small_sustained_shift_the_rows_hide() {
    // 12 h at 10 s of a 1 h cycle (amplitude 5) plus uniform noise (sd ≈ 0.29);
    // from 9 h the level rises by 0.4: smaller than the row-to-row noise range.
    let shift_at: usize = 9 * 360;
    let rows: Vec<Row> = (0..4320i64)
        .map(|i| {
            let t = T0 + i * 10 * S;
            let phase = (t.rem_euclid(3600 * S)) as f64 / (3600 * S) as f64;
            let noise = ((i * 7919) % 101) as f64 / 101.0 - 0.5;
            let step = if i >= shift_at as i64 { 0.4 } else { 0.0 };
            let v = 20.0 + 5.0 * (std::f64::consts::TAU * phase).sin() + noise + step;
            row(t, "d", &[v])
        })
        .collect();
    let b = batch(&["x"], &rows);
    let p = FeatureParams::default()
        .kinds([FeatureKind::ChartEwma, FeatureKind::ChartCusum])
        .chart_halflives(["0s", "30s", "2m"])
        .check()
        .unwrap();
    let m = transform(&b, &fit(&b, TrainSpan::Fraction(0.5), &p).unwrap()).unwrap();
    let slow = m.column_by_name("x__chart_ewma__2m").unwrap();
    let fast = m.column_by_name("x__chart_ewma__30s").unwrap();
    let cusum = m.column_by_name("x__chart_cusum").unwrap();
    // In control (after a few minutes of warm-up, before the shift) the slow
    // chart stays near 0: the cycle is removed and the residual standardised.
    let before = slow[60..shift_at]
        .iter()
        .fold(0.0f64, |a, v| a.max(v.abs()));
    assert!(before < 1.0, "in control: {before}");
    // Twenty minutes after the shift it sits well above anything seen before.
    let after = slow[shift_at + 120];
    assert!(after > 1.0 && after > 1.5 * before, "{after} vs {before}");
    // The longer half-life averages more: less spread in control.
    let spread = |c: &[f64]| {
        let v = &c[60..shift_at];
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    };
    assert!(
        spread(slow) < spread(fast),
        "{} {}",
        spread(slow),
        spread(fast)
    );
    // Half-life 0 is the Shewhart chart: the residual itself, about unit spread in
    // control (the training spread standardises it), the widest of the three.
    let point = m.column_by_name("x__chart_ewma__0s").unwrap();
    assert!(
        spread(fast) < spread(point),
        "{} {}",
        spread(fast),
        spread(point)
    );
    assert!((0.7..1.3).contains(&spread(point)), "{}", spread(point));
    // The upper CUSUM accumulates the shift.
    assert!(cusum[shift_at + 120] > 5.0, "{}", cusum[shift_at + 120]);
    assert!(cusum[shift_at - 1] < cusum[shift_at + 120]);
}

#[test]
fn a_device_seen_briefly_in_a_state_charts_it_against_a_spread_near_the_fleet_s() {
    // Two devices, 2 h at 10 s. Device "a" runs, but for 12 calm IDLE rows in the
    // training half (10 ± 0.005) and 12 IDLE rows at 12 in the second half;
    // device "b" alternates RUN and IDLE every 10 minutes, IDLE at 10 ± 2.
    let mut rows = Vec::new();
    for i in 0..720i64 {
        let t = T0 + i * 10 * S;
        let wobble = ((i * 7919) % 101) as f64 / 101.0 - 0.5;
        let (a_idle, a_value) = match i {
            100..112 => (true, 10.0 + 0.01 * wobble),
            500..512 => (true, 12.0),
            _ => (false, 100.0 + wobble),
        };
        rows.push(Row {
            state: if a_idle { State::Idle } else { State::Run },
            ..row(t, "a", &[a_value])
        });
        let b_idle = (i / 60) % 2 == 1;
        rows.push(Row {
            state: if b_idle { State::Idle } else { State::Run },
            ..row(
                t,
                "b",
                &[if b_idle {
                    10.0 + 4.0 * wobble
                } else {
                    100.0 + wobble
                }],
            )
        });
    }
    let b = batch(&["x"], &rows);
    let chart = |prior: f64| {
        let p = FeatureParams::default()
            .kinds([FeatureKind::ChartEwma])
            .chart_halflives(["0s"])
            .chart_prior_rows(prior)
            .period("off")
            .check()
            .unwrap();
        let f = fit(&b, TrainSpan::Fraction(0.5), &p).unwrap();
        let m = transform(&b, &f).unwrap();
        let z = m.column_by_name("x__chart_ewma__0s").unwrap().to_vec();
        // The chart of device "a"'s first IDLE row of the second half.
        let r = (0..b.len())
            .find(|&r| {
                b.device_names()[b.device_codes()[r] as usize] == "a"
                    && b.timestamps()[r] == T0 + 500 * 10 * S
            })
            .unwrap();
        (z[r], f)
    };
    let (own, f) = chart(0.0);
    let (pooled, _) = chart(30.0);
    // Its own spread, from one calm stretch, makes 2 units off the level look
    // like hundreds of spreads; pooled with the fleet's it is about one.
    assert!(own > 100.0, "{own}");
    assert!(pooled > 0.3 && pooled < 3.0, "{pooled}");
    // The unit is the root of the row-weighted mean of the two variances.
    let idle = |bs: &[itap_features::Baseline]| {
        bs.iter()
            .find(|x| x.state == Some(State::Idle))
            .map(|x| (x.rows as f64, x.resid_scale[0].unwrap()))
            .unwrap()
    };
    let (n, unit) = idle(
        &f.devices()
            .iter()
            .find(|d| d.device == "a")
            .unwrap()
            .baselines,
    );
    let (_, fleet) = idle(f.pooled());
    assert_eq!(n, 12.0);
    let want = ((n * unit * unit + 30.0 * fleet * fleet) / (n + 30.0)).sqrt();
    assert!(
        (own * unit / pooled - want).abs() < 1e-9 * want,
        "{} vs {want}",
        own * unit / pooled
    );
}

#[test]
fn event_counters() {
    use State::*;
    let spec = [
        (0, Run, 0),
        (10, Run, 2),
        (20, Run, 2),
        (30, Idle, 0),
        (40, Idle, 0),
        (50, Run, 5),
        (200, Run, 0),
    ];
    let rows: Vec<Row> = spec
        .iter()
        .map(|&(t, s, e)| Row {
            state: s,
            error: e,
            ..row(T0 + t * S, "a", &[1.0])
        })
        .collect();
    let b = batch(&["x"], &rows);
    let m = run(
        &b,
        params([
            FeatureKind::ErrorStreak,
            FeatureKind::SinceError,
            FeatureKind::StateChanges,
            FeatureKind::SinceStateChange,
            FeatureKind::StateShare,
        ])
        .windows(["30s"])
        .elapsed_cap("100s"),
    );
    let col = |n: &str| m.column_by_name(n).unwrap().to_vec();
    assert_eq!(
        col("error_code__streak"),
        [0.0, 1.0, 2.0, 0.0, 0.0, 1.0, 0.0]
    );
    assert_eq!(
        col("error_code__since_s"),
        [100.0, 0.0, 0.0, 10.0, 20.0, 0.0, 100.0]
    );
    // Changes at 30 s (RUN -> IDLE) and 50 s (IDLE -> RUN); window (t - 30 s, t].
    assert_eq!(
        col("state__changes__30s"),
        [0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 0.0]
    );
    assert_eq!(
        col("state__since_change_s"),
        [0.0, 10.0, 20.0, 0.0, 10.0, 0.0, 100.0]
    );
    let share = col("state__share__30s");
    assert_eq!(
        share[4],
        2.0 / 3.0,
        "20 s: IDLE at 30 and 40 s, RUN at 20 s"
    );
    assert_eq!(share[6], 1.0);
}

#[test]
fn spectra_give_hertz_and_hold_between_hops() {
    // A 60 s period sampled every 5 s: 1/60 Hz.
    let rows: Vec<Row> = (0..200i64)
        .map(|i| {
            let v = (std::f64::consts::TAU * (i * 5) as f64 / 60.0).sin();
            row(T0 + i * 5 * S, "a", &[v])
        })
        .collect();
    let b = batch(&["x"], &rows);
    let m = run(
        &b,
        params([
            FeatureKind::SpecDominantHz,
            FeatureKind::SpecEnergy,
            FeatureKind::SpecBands,
        ])
        .spectral_window(48)
        .spectral_hop(6)
        .spectral_bands([[0.0, 0.01], [0.01, 0.03]]),
    );
    let dom = m.column_by_name("x__spec_dominant_hz__48rows").unwrap();
    assert!(
        dom[..47].iter().all(|v| v.is_nan()),
        "the first window is not full yet"
    );
    // Bins are fs/48 = 1/240 Hz apart; 1/60 Hz is bin 4.
    assert!((dom[47] - 4.0 / 240.0).abs() < 1e-12, "{}", dom[47]);
    let energy = m.column_by_name("x__spec_energy__48rows").unwrap();
    assert!(
        (energy[100] - 0.5).abs() < 0.05,
        "variance of a unit sine: {}",
        energy[100]
    );
    assert!(
        m.column_by_name("x__spec_band_0.01_0.03hz__48rows")
            .unwrap()[100]
            > 0.95
    );
    // Recomputed at rows 47, 53, 59, ...; held in between.
    for i in 48..53 {
        assert!(same(energy[i], energy[47]));
    }
    assert!(!same(energy[53], energy[47]));
}

#[test]
fn the_fit_serializes_and_transforms_the_same_after_a_round_trip() {
    let b = simulate(&SimParams::default().devices(3).hours(1.0).check().unwrap());
    let p = FeatureParams::default()
        .kinds(FeatureKind::ALL)
        .spectral_bands([[0.0, 0.01]])
        .check()
        .unwrap();
    let fitted = fit(&b, TrainSpan::Fraction(0.7), &p).unwrap();
    let json = serde_json::to_string(&fitted).unwrap();
    let back: FeaturesFit = serde_json::from_str(&json).unwrap();
    assert_eq!(back, fitted);
    let (x, y) = (
        transform(&b, &fitted).unwrap(),
        transform(&b, &back).unwrap(),
    );
    for j in 0..x.n_features() {
        assert!(
            x.column(j)
                .iter()
                .zip(y.column(j))
                .all(|(a, b)| same(*a, *b))
        );
    }
    assert_eq!(
        fitted.catalogue().unwrap(),
        catalogue(&p, b.schema()).unwrap()
    );
}

#[test]
fn default_features_on_simulated_telemetry_are_mostly_defined() {
    let b = simulate(&SimParams::default().devices(4).hours(2.0).check().unwrap());
    let p = FeatureParams::default().check().unwrap();
    let m = transform(&b, &fit(&b, TrainSpan::Fraction(0.7), &p).unwrap()).unwrap();
    assert_eq!(m.n_features(), 84);
    assert_eq!(m.len(), b.len());
    assert_eq!(m.timestamps(), b.timestamps());
    assert_eq!(m.device_codes(), b.device_codes());
    for (info, col) in m.catalogue().iter().zip(m.columns()) {
        let nan = col.iter().filter(|v| v.is_nan()).count();
        assert!(
            nan * 10 < col.len(),
            "{}: {nan} of {} undefined",
            info.name,
            col.len()
        );
        assert!(col.iter().all(|v| !v.is_infinite()), "{}", info.name);
    }
    let row_major = m.to_row_major();
    assert_eq!(row_major.len(), m.len() * 84);
    assert!(same(row_major[5 * 84 + 7], m.column(7)[5]));
}

#[test]
fn transform_refuses_data_without_the_fitted_signals() {
    let b = batch(&["x"], &[row(T0, "a", &[1.0])]);
    let fitted = fit(
        &b,
        TrainSpan::All,
        &params([FeatureKind::Rate]).check().unwrap(),
    )
    .unwrap();
    let other = batch(&["y"], &[row(T0, "a", &[1.0])]);
    let e = transform(&other, &fitted).unwrap_err();
    assert!(matches!(e, Error::UnknownSignal { .. }), "{e}");
    assert!(e.to_string().contains("`x`"), "{e}");
    let e = fit(
        &b,
        TrainSpan::Until(T0 - 1),
        &params([FeatureKind::Rate]).check().unwrap(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::EmptyTraining { .. }), "{e}");
    let e = fit(
        &b,
        TrainSpan::Rows(&[true, false]),
        &params([FeatureKind::Rate]).check().unwrap(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::MaskLength { mask: 2, rows: 1 }), "{e}");
}

#[test]
fn an_empty_batch_gives_an_empty_matrix_with_every_column() {
    let b = batch(&["x"], &[row(T0, "a", &[1.0])]);
    let p = FeatureParams::default().check().unwrap();
    let fitted = fit(&b, TrainSpan::All, &p).unwrap();
    let empty = b.take(&[]);
    let m = transform(&empty, &fitted).unwrap();
    assert!(m.is_empty());
    assert_eq!(m.n_features(), 16 + 4);
}

#[test]
fn exports_csv_and_parquet_with_keys_and_catalogue() {
    let b = simulate(&SimParams::default().devices(2).hours(0.5).check().unwrap());
    let p = FeatureParams::default().check().unwrap();
    let m = transform(&b, &fit(&b, TrainSpan::All, &p).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("out/features.csv");
    m.write(&csv).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("timestamp,device_id,rpm__mean__5m,"),
        "{header}"
    );
    assert_eq!(header.split(',').count(), 2 + 84);
    let first = lines.next().unwrap();
    assert!(
        first.starts_with("2026-01-01T00:00:00Z,DEV-0000,"),
        "{first}"
    );
    assert_eq!(text.lines().count(), 1 + b.len());
    // Values round-trip exactly.
    let fields: Vec<&str> = first.split(',').collect();
    let v: f64 = fields[2].parse().unwrap();
    assert!(same(v, m.column(0)[0]));

    let pq = dir.path().join("features.parquet");
    m.write(&pq).unwrap();
    use polars::prelude::{ParquetReader, SerReader};
    let mut reader = ParquetReader::new(std::fs::File::open(&pq).unwrap());
    let meta = reader.get_metadata().unwrap().clone();
    let df = reader.finish().unwrap();
    assert_eq!(df.height(), b.len());
    assert_eq!(df.width(), 2 + 84);
    let col = df.column("temp_c__z__5m").unwrap().f64().unwrap();
    let ours = m.column_by_name("temp_c__z__5m").unwrap();
    assert!(
        col.iter()
            .zip(ours)
            .all(|(a, b)| same(a.unwrap_or(f64::NAN), *b))
    );
    let kv = meta.key_value_metadata().as_ref().unwrap();
    let cat = kv.iter().find(|k| k.key == PARQUET_CATALOGUE_KEY).unwrap();
    assert!(cat.value.as_ref().unwrap().contains("\"temp_c__z__5m\""));
    let _ = Schema::default();
}

#[test]
fn a_fit_edited_into_inconsistency_is_refused_not_panicked_on() {
    let b = batch(&["x", "y"], &[row(T0, "a", &[1.0, 2.0])]);
    let p = FeatureParams::default().check().unwrap();
    let fitted = fit(&b, TrainSpan::All, &p).unwrap();
    let mut json: serde_json::Value = serde_json::to_value(&fitted).unwrap();
    json["seasonal"].as_array_mut().unwrap().pop();
    let broken: FeaturesFit = serde_json::from_value(json).unwrap();
    let e = transform(&b, &broken).unwrap_err();
    assert!(matches!(e, Error::InvalidFit { .. }), "{e}");
    let mut json: serde_json::Value = serde_json::to_value(&fitted).unwrap();
    json["params"]["windows"] = serde_json::json!(["0s"]);
    let broken: FeaturesFit = serde_json::from_value(json).unwrap();
    assert!(matches!(
        transform(&b, &broken).unwrap_err(),
        Error::InvalidParam(_)
    ));
}

/// The rows of `b` whose device is one of `devices` (codes), in batch order.
fn devices_of(b: &Batch, devices: &[u32]) -> Batch {
    let rows: Vec<usize> = (0..b.len())
        .filter(|&r| devices.contains(&b.device_codes()[r]))
        .collect();
    b.take(&rows)
}

#[test]
fn a_fleet_fitted_a_group_of_devices_at_a_time_is_the_fit_of_the_whole() {
    use itap_features::{fit_devices, fit_fleet};
    // 7 devices over 6 h (states, faults, nuisance errors; 10 s samples),
    // a training span that leaves MAINT and faulty rows out.
    let b = simulate(&SimParams::default().devices(7).hours(6.0).check().unwrap());
    let p = FeatureParams::default()
        .kinds(FeatureKind::ALL)
        .spectral_bands([[0.0, 0.01]])
        .check()
        .unwrap();
    let cut = b.time_bounds().unwrap().0 + 4 * 3_600_000_000;
    let used: Vec<bool> = (0..b.len())
        .map(|r| {
            b.timestamps()[r] <= cut
                && b.states().unwrap()[r] != State::Maint
                && b.tag_of(r).is_none()
        })
        .collect();
    let whole = fit(&b, TrainSpan::Rows(&used), &p).unwrap();
    let fleet = fit_fleet(&b, TrainSpan::Rows(&used), &p).unwrap();
    assert_eq!(fleet.devices(), 7);
    for groups in [
        vec![vec![0, 1, 2, 3, 4, 5, 6]],
        vec![vec![6], vec![0, 3, 4], vec![1, 2, 5]],
    ] {
        let parts: Vec<_> = groups
            .iter()
            .map(|g| {
                let rows: Vec<usize> = (0..b.len())
                    .filter(|&r| g.contains(&b.device_codes()[r]))
                    .collect();
                let mask: Vec<bool> = rows.iter().map(|&r| used[r]).collect();
                fit_devices(&b.take(&rows), TrainSpan::Rows(&mask), &fleet).unwrap()
            })
            .collect();
        let assembled = FeaturesFit::assemble(fleet.clone(), parts).unwrap();
        assert_eq!(assembled, whole, "groups {groups:?}");
        // A group's rows transformed with the assembled fit are the whole
        // batch's rows transformed with the whole fit.
        let x = transform(&b, &whole).unwrap();
        let g = devices_of(&b, &groups[groups.len() - 1]);
        let y = transform(&g, &assembled).unwrap();
        let rows: Vec<usize> = (0..b.len())
            .filter(|&r| groups[groups.len() - 1].contains(&b.device_codes()[r]))
            .collect();
        for j in 0..x.n_features() {
            for (k, &r) in rows.iter().enumerate() {
                assert!(same(x.column(j)[r], y.column(j)[k]), "feature {j} row {r}");
            }
        }
    }
    // A device in two groups, and a group of other signals, are refused.
    let g = fit_devices(&devices_of(&b, &[0, 1]), TrainSpan::All, &fleet).unwrap();
    let h = fit_devices(&devices_of(&b, &[1]), TrainSpan::All, &fleet).unwrap();
    assert!(matches!(
        FeaturesFit::assemble(fleet.clone(), vec![g, h]),
        Err(Error::InvalidFit { .. })
    ));
    // Groups without a training row give no device; with none at all there is
    // no fit.
    let two = devices_of(&b, &[2, 3]);
    let none = vec![false; two.len()];
    let empty = fit_devices(&two, TrainSpan::Rows(&none), &fleet).unwrap();
    assert_eq!(empty.devices().len(), 0);
    assert!(matches!(
        FeaturesFit::assemble(fleet, vec![empty]),
        Err(Error::EmptyTraining { .. })
    ));
}
