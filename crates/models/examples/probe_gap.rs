//! PROBE: whole passes against in-pass sums, interleaved.
use models::{Model, seeded_input, zoo};
fn med(mut v: Vec<f64>) -> f64 { v.sort_by(|a, b| a.partial_cmp(b).unwrap()); v[v.len() / 2] }
fn mean(v: &[f64]) -> f64 { v.iter().sum::<f64>() / v.len() as f64 }
fn trim(mut v: Vec<f64>, lo: f64, hi: f64) -> f64 { v.sort_by(|a, b| a.partial_cmp(b).unwrap()); let n = v.len(); let a = (n as f64 * lo) as usize; let b = n - (n as f64 * hi) as usize; mean(&v[a..b]) }
fn main() {
    let name = std::env::args().nth(1).unwrap_or("mobilenet_v2".into());
    let n: usize = std::env::args().nth(2).map_or(120, |s| s.parse().unwrap());
    let net = zoo::build(&name).unwrap();
    let x = seeded_input(&net, 1, 0).unwrap();
    let model = Model::seeded(net, 0, &models::Backend::Flex.device().unwrap()).unwrap();
    let (mut whole, mut passes) = (Vec::new(), Vec::new());
    for i in 0..n + 10 {
        let w = model.time_forward(&x, 0, 1).unwrap();
        let p = model.time_pass(x.clone()).unwrap();
        if i >= 10 { whole.push(w); passes.push(p); }
    }
    let nodes = passes[0].len();
    let per_node = |f: &dyn Fn(Vec<f64>) -> f64| -> f64 { (0..nodes).map(|v| f(passes.iter().map(|p| p[v]).collect())).sum() };
    let sum_med = per_node(&|v| med(v));
    let sum_mean = per_node(&|v| mean(&v));
    let med_sum = med(passes.iter().map(|p| p.iter().sum()).collect());
    let wm = med(whole.clone());
    let t10 = per_node(&|v| trim(v, 0.1, 0.1));
    let t25 = per_node(&|v| trim(v, 0.25, 0.25));
    let h20 = per_node(&|v| trim(v, 0.0, 0.2));
    println!("{name} trimmed 10/10 {:.3} 25/25 {:.3} 0/20 {:.3} (ratios to med of sums)", t10 / med_sum, t25 / med_sum, h20 / med_sum);
    println!("{name} whole med {wm:.3} | med of sums {med_sum:.3} ({:.3}) | sum of medians {sum_med:.3} ({:.3}) | sum of means {sum_mean:.3} ({:.3})", wm / med_sum, wm / sum_med, wm / sum_mean);
}
