//! Stable-Rust smoke runner for the fuzz harnesses: starts from the valid
//! inputs in `keyquorum_fuzz::seeds` and applies random mutations (bit flips,
//! byte writes, insertions, deletions, truncation, splicing) from a seeded
//! RNG for a fixed time per harness. No coverage guidance: that is what
//! `cargo fuzz` on nightly adds.
//!
//! ```text
//! smoke [--seconds S] [--seed N] [--target NAME] [--write-corpus DIR] [--input FILE]
//! ```
//! `--write-corpus DIR` writes each harness's seeds to `DIR/<target>/` (the
//! starting corpus for `cargo fuzz run`) and exits; `--input FILE` runs one
//! input (a crash artifact) through the selected harnesses.

use std::panic;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

fn below(rng: &mut ChaCha20Rng, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (rng.next_u64() % n as u64) as usize
    }
}

fn mutate(rng: &mut ChaCha20Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    for _ in 0..1 + below(rng, 4) {
        let len = input.len();
        match below(rng, 9) {
            0 if len > 0 => {
                let i = below(rng, len);
                input[i] ^= 1 << below(rng, 8);
            }
            1 if len > 0 => {
                let i = below(rng, len);
                input[i] = rng.next_u32() as u8;
            }
            2 => {
                let i = below(rng, len + 1);
                let n = 1 + below(rng, 8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u32() as u8).collect();
                input.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = below(rng, len);
                let n = 1 + below(rng, (len - i).min(16));
                input.drain(i..i + n);
            }
            4 => input.truncate(below(rng, len + 1)),
            5 if len > 2 => {
                // Overwrite a run with an interesting value.
                let i = below(rng, len);
                let v = [0x00, 0xff, 0x7f, 0x80][below(rng, 4)];
                for b in input.iter_mut().skip(i).take(1 + below(rng, 32)) {
                    *b = v;
                }
            }
            6 if !seeds.is_empty() => {
                // Splice the tail of another seed.
                let other = &seeds[below(rng, seeds.len())];
                let at = below(rng, len + 1);
                let from = below(rng, other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            7 if len > 1 => input[1] = rng.next_u32() as u8,
            8 if len > 0 => input[0] = rng.next_u32() as u8,
            _ => {}
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() {
    let mut seconds = 3.0_f64;
    let mut seed = 1_u64;
    let mut only: Option<String> = None;
    let mut corpus: Option<String> = None;
    let mut replay: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&arg));
        match arg.as_str() {
            "--seconds" => seconds = value().parse().unwrap_or_else(|_| usage("--seconds")),
            "--seed" => seed = value().parse().unwrap_or_else(|_| usage("--seed")),
            "--target" => only = Some(value()),
            "--write-corpus" => corpus = Some(value()),
            "--input" => replay = Some(value()),
            other => usage(other),
        }
    }
    let targets: Vec<_> = keyquorum_fuzz::TARGETS
        .iter()
        .filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name))
        .collect();
    if targets.is_empty() {
        usage("--target");
    }

    if let Some(path) = replay {
        // Run one input (a libFuzzer artifact, say) through the chosen harnesses.
        let input = std::fs::read(&path).expect("read input");
        for (_, harness) in &targets {
            harness(&input);
        }
        return;
    }

    if let Some(dir) = corpus {
        for (name, _) in &targets {
            let path = format!("{dir}/{name}");
            std::fs::create_dir_all(&path).expect("create corpus directory");
            for (i, s) in keyquorum_fuzz::seeds::seeds(name).iter().enumerate() {
                std::fs::write(format!("{path}/seed-{i:03}"), s).expect("write seed");
            }
        }
        return;
    }

    let mut failed = false;
    for (name, harness) in targets {
        let seeds = keyquorum_fuzz::seeds::seeds(name);
        assert!(!seeds.is_empty(), "{name} has no seeds");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let started = Instant::now();
        let budget = Duration::from_secs_f64(seconds);
        let mut runs = 0_u64;
        // Every seed as is first, then mutations until the budget is spent.
        let mut queue: Vec<Vec<u8>> = seeds.clone();
        while started.elapsed() < budget || !queue.is_empty() {
            let input = queue.pop().unwrap_or_else(|| {
                let mut input = seeds[below(&mut rng, seeds.len())].clone();
                mutate(&mut rng, &mut input, &seeds);
                input
            });
            runs += 1;
            if panic::catch_unwind(|| harness(&input)).is_err() {
                eprintln!("{name}: FAILED on input {}", hex(&input));
                failed = true;
                break;
            }
        }
        println!(
            "{name:<16} {runs:>8} runs in {:.1} s ({} seeds)",
            started.elapsed().as_secs_f64(),
            seeds.len()
        );
    }
    if failed {
        std::process::exit(1);
    }
}

fn usage(at: &str) -> ! {
    eprintln!(
        "smoke: bad argument {at:?}\n\
         usage: smoke [--seconds S] [--seed N] [--target NAME] [--write-corpus DIR] [--input FILE]"
    );
    std::process::exit(2);
}
