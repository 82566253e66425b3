//! The simulator's promises: determinism, stream independence, realistic behaviour and
//! exact ground truth.

use itap_telemetry::{
    Batch, CheckedSimParams, CsvBatchWriter, FaultKind, FaultParams, FleetSim, ParamGuard,
    SimParams, State, codes, simulate, simulate_device_batch, simulate_to_csv, write_csv,
    write_csv_to,
};

fn csv_bytes(b: &Batch) -> Vec<u8> {
    let mut out = Vec::new();
    write_csv_to(b, &mut out).unwrap();
    out
}

fn params(devices: usize, hours: f64) -> CheckedSimParams {
    SimParams::default()
        .devices(devices)
        .hours(hours)
        .check()
        .unwrap()
}

/// The rows of one device, in time order.
fn device_rows(b: &Batch, device: &str) -> Vec<usize> {
    let code = b.device_names().iter().position(|d| d == device).unwrap() as u32;
    (0..b.len())
        .filter(|&r| b.device_codes()[r] == code)
        .collect()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let p = params(5, 2.0);
    let a = csv_bytes(&simulate(&p));
    assert_eq!(a, csv_bytes(&simulate(&p)));
    let q = SimParams::default()
        .devices(5)
        .hours(2.0)
        .seed(7)
        .check()
        .unwrap();
    assert_ne!(a, csv_bytes(&simulate(&q)));
}

/// The simulator's output is pinned: the default fleet (25 devices × 6 h, seed
/// 42) is these bytes, as it was before the simulator became a per-device
/// stepper and the fleet was simulated in blocks of samples. A change here
/// changes every figure measured on simulated data; make it on purpose.
#[test]
fn the_default_fleet_is_the_same_bytes_as_ever() {
    use sha2::{Digest, Sha256};
    let csv = csv_bytes(&simulate(&SimParams::default().check().unwrap()));
    let hex: String = Sha256::digest(&csv)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex,
        "1383ab74abe3b217e520076263dfb6a35acdcf892cc56aaa6b78cbb6da8e4bf6"
    );
}

#[test]
fn output_does_not_depend_on_thread_count() {
    let p = params(8, 2.0);
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| csv_bytes(&simulate(&p)))
    };
    assert_eq!(run(1), run(3));
}

#[test]
fn adding_devices_does_not_change_the_others() {
    let small = simulate(&params(3, 1.0));
    let large = simulate(&params(10, 1.0));
    for d in ["DEV-0000", "DEV-0002"] {
        let a = small.take(&device_rows(&small, d));
        let b = large.take(&device_rows(&large, d));
        assert_eq!(a.timestamps(), b.timestamps());
        for k in 0..a.schema().len() {
            let same = a
                .signal(k)
                .iter()
                .zip(b.signal(k))
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "signal {k} of {d} changed when devices were added");
        }
        assert_eq!(a.tag_codes(), b.tag_codes());
    }
    // And one device alone is the same series again.
    let alone = simulate_device_batch(&params(10, 1.0), 2);
    let in_fleet = large.take(&device_rows(&large, "DEV-0002"));
    assert_eq!(csv_bytes(&alone), csv_bytes(&in_fleet));
}

/// The fleet simulated in blocks of `steps` samples, written as one CSV, on a
/// pool of `threads` threads.
fn blocks_csv(p: &CheckedSimParams, steps: usize, threads: usize) -> (Vec<u8>, usize) {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(|| {
            let (mut sim, mut w) = (FleetSim::new(p), CsvBatchWriter::new(Vec::new()));
            let mut blocks = 0;
            while let Some(block) = sim.next_block(steps) {
                assert!(block.len() <= steps * p.params().devices);
                assert_eq!(sim.steps_done(), ((blocks + 1) * steps).min(p.steps()));
                w.write(&block).unwrap();
                blocks += 1;
            }
            assert_eq!(sim.steps_done(), p.steps());
            (w.into_inner(), blocks)
        })
}

#[test]
fn the_fleet_in_blocks_of_samples_is_the_fleet_at_once() {
    // Faults and nuisance errors often, so that blocks cut through faults.
    let mut q = SimParams::default().devices(6).hours(4.0).seed(5);
    q.faults.rate = 0.01;
    q.faults.nuisance_error_rate = 0.01;
    let p = q.check().unwrap();
    let whole = simulate(&p);
    assert!(whole.tagged_rows() > 1000, "the span holds faults");
    let expected = csv_bytes(&whole);
    let n = p.steps();
    for (steps, threads) in [(1, 1), (7, 2), (n - 1, 3), (n, 1), (n + 10, 2)] {
        let (csv, blocks) = blocks_csv(&p, steps, threads);
        assert_eq!(blocks, n.div_ceil(steps));
        assert!(
            csv == expected,
            "blocks of {steps} samples on {threads} threads differ"
        );
    }
    // Every column, not only the CSV's text: the NaN of a dropout included.
    let mut sim = FleetSim::new(&p);
    let first = sim.next_block(100).unwrap();
    let rows = 100 * 6;
    assert_eq!(first.timestamps(), &whole.timestamps()[..rows]);
    assert_eq!(first.device_codes(), &whole.device_codes()[..rows]);
    assert_eq!(
        first.tag_codes().unwrap(),
        &whole.tag_codes().unwrap()[..rows]
    );
    let second = sim.next_block(100).unwrap();
    for k in 0..p.schema().len() {
        let same = second
            .signal(k)
            .iter()
            .zip(&whole.signal(k)[rows..2 * rows])
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "signal {k} of the second block");
    }
}

#[test]
fn a_fleet_simulated_into_a_file_is_the_file_of_the_whole_batch() {
    // 300 devices: blocks of 873 samples (262,144 rows), so 1,080 samples take two.
    let p = SimParams::default()
        .devices(300)
        .hours(3.0)
        .seed(3)
        .check()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (streamed, whole) = (
        dir.path().join("a/streamed.csv"),
        dir.path().join("whole.csv"),
    );
    let mut heard = Vec::new();
    let done = simulate_to_csv(&p, &streamed, &mut |rows| heard.push(rows)).unwrap();
    let batch = simulate(&p);
    write_csv(&batch, &whole).unwrap();
    assert_eq!(
        std::fs::read(&streamed).unwrap(),
        std::fs::read(&whole).unwrap()
    );
    assert_eq!(done.rows, p.rows() as u64);
    assert_eq!(done.tagged_rows, batch.tagged_rows() as u64);
    assert_eq!(heard, [873 * 300, 1080 * 300]);
    // Only the file: no temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("a")).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn a_batch_of_other_columns_is_refused_by_the_csv_writer() {
    let p = params(2, 0.1);
    let mut w = CsvBatchWriter::new(Vec::new());
    w.write(&simulate(&p)).unwrap();
    let mut other = SimParams::default().devices(2).hours(0.1);
    other.signals.pop();
    let err = w.write(&simulate(&other.check().unwrap())).unwrap_err();
    assert!(err.to_string().contains("columns differ"), "{err}");
}

#[test]
fn rows_are_ordered_by_time_then_device_on_the_grid() {
    let p = params(4, 1.0);
    let b = simulate(&p);
    assert_eq!(b.len(), p.rows());
    assert_eq!(b.order_by_time(), (0..b.len()).collect::<Vec<_>>());
    let ts = b.timestamps();
    assert_eq!(ts[4] - ts[0], 10_000_000);
    assert!(
        b.signal_by_name("rpm")
            .unwrap()
            .iter()
            .all(|v| v.is_nan() || v.fract() == 0.0)
    );
}

#[test]
fn states_dwell_and_signals_lag() {
    let b = simulate(&params(10, 24.0));
    for d in 0..10 {
        let rows = device_rows(&b, &format!("DEV-{d:04}"));
        let states: Vec<State> = rows.iter().map(|&r| b.states().unwrap()[r]).collect();
        let changes = states.windows(2).filter(|w| w[0] != w[1]).count();
        // 8,640 samples: machines change state tens of times a day, not every sample.
        assert!(
            (5..400).contains(&changes),
            "device {d}: {changes} state changes"
        );
        let run = states.iter().filter(|&&s| s == State::Run).count() as f64;
        assert!(
            run / states.len() as f64 > 0.5,
            "device {d} runs most of the time"
        );
        // Temperature follows a thermal lag: no jump of more than a few degrees
        // between samples even at state changes (noise σ 0.3 °C).
        let temp = b.signal_by_name("temp_c").unwrap();
        for w in rows.windows(2) {
            let (a, c) = (temp[w[0]], temp[w[1]]);
            if a.is_finite()
                && c.is_finite()
                && b.tag_of(w[1]).is_none()
                && b.tag_of(w[0]).is_none()
            {
                assert!(
                    (a - c).abs() < 3.0,
                    "device {d}: temperature jumped {a} -> {c}"
                );
            }
        }
    }
    // IDLE spins slower than RUN, MAINT stands still.
    let rpm = b.signal_by_name("rpm").unwrap();
    let mean_in = |s: State| {
        let v: Vec<f64> = (0..b.len())
            .filter(|&r| b.states().unwrap()[r] == s && b.tag_of(r).is_none())
            .map(|r| rpm[r])
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(mean_in(State::Run) > 1500.0);
    assert!(mean_in(State::Idle) < mean_in(State::Run) * 0.6);
    assert!(mean_in(State::Maint) < mean_in(State::Idle));
}

#[test]
fn ground_truth_marks_exactly_the_affected_rows() {
    let b = simulate(&params(25, 6.0));
    let errors = b.error_codes().unwrap();
    let temp = b.signal_by_name("temp_c").unwrap();
    let volt = b.signal_by_name("voltage_v").unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for r in 0..b.len() {
        let tag = b.tag_of(r);
        if let Some(t) = tag {
            seen.insert(t.to_owned());
        }
        // Dropouts: missing values and error 5 exactly on dropout rows.
        assert_eq!(temp[r].is_nan(), tag == Some("sensor_dropout"), "row {r}");
        assert_eq!(
            errors[r] == codes::SENSOR_LOST,
            tag == Some("sensor_dropout"),
            "row {r}"
        );
        // Over-temperature errors only during an overheat drift.
        if errors[r] == codes::OVER_TEMPERATURE {
            assert_eq!(tag, Some("overheat_drift"), "row {r}");
        }
        // Voltage far from nominal only during a power spike.
        if (volt[r] - 24.0).abs() > 1.5 {
            assert_eq!(tag, Some("power_spike"), "row {r}: {}", volt[r]);
        }
    }
    let all: std::collections::BTreeSet<String> = FaultKind::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(seen, all, "the default config injects all four kinds");
    let share = b.tagged_rows() as f64 / b.len() as f64;
    assert!((0.05..0.6).contains(&share), "tagged share {share}");
}

#[test]
fn faults_have_visible_effects() {
    let b = simulate(&params(25, 6.0));
    let mean = |sig: &str, pred: &dyn Fn(usize) -> bool| {
        let col = b.signal_by_name(sig).unwrap();
        let v: Vec<f64> = (0..b.len())
            .filter(|&r| pred(r) && b.states().unwrap()[r] == State::Run && col[r].is_finite())
            .map(|r| col[r])
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let normal = |r: usize| b.tag_of(r).is_none();
    let b = &b;
    let of = |k: &'static str| move |r: usize| b.tag_of(r) == Some(k);
    assert!(mean("temp_c", &of("overheat_drift")) > mean("temp_c", &normal) + 3.0);
    assert!(mean("vibration_g", &of("bearing_wear")) > mean("vibration_g", &normal) * 1.3);
    assert!(mean("current_a", &of("power_spike")) > mean("current_a", &normal) * 1.2);
}

#[test]
fn a_healthy_fleet_has_no_ground_truth_faults() {
    let p = SimParams::default()
        .devices(5)
        .hours(2.0)
        .faults(FaultParams::none())
        .check()
        .unwrap();
    let b = simulate(&p);
    assert_eq!(b.tagged_rows(), 0);
    assert!(b.error_codes().unwrap().iter().all(|&e| e == 0));
    assert!(b.signal(1).iter().all(|v| v.is_finite()));
}
