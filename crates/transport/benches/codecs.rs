//! The boundary codecs on realistic activations: throughput to encode and to decode, in MB/s of
//! raw f32 (`thrpt`), and the compressed ratio, printed before the measurements.
//!
//! The tensors come from a deterministic stand-in for a real network's first layers: a smooth
//! 224×224 RGB picture (six coloured blobs on gradients, ±1.5 levels of noise, quantised to u8
//! and normalised as torchvision does for ImageNet) through He-initialised seeded convolutions:
//!
//! - `alexnet_relu`: AlexNet's conv1 (11×11, stride 4) + ReLU, 64×55×55, about half zeros;
//! - `resnet18_pool`: ResNet-18's conv1 (7×7, stride 2) + ReLU + 3×3 max pool, 64×56×56;
//! - `resnet18_relu`: a batch-normalised 3×3 convolution on that, cut by ReLU at 72% zeros;
//! - `resnet18_preact`: the same convolution before the ReLU: dense;
//! - `image`: the normalised picture, 3×224×224.
//!
//! Run with `cargo bench -p transport --bench codecs` (add `-- --quick` for a short run).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use transport::{Codec, Limits, WireTensor};

/// xorshift64 with a Box–Muller normal: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform().max(1e-7), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
    }
}

/// A smooth picture as u8 levels, normalised: `(x/255 − mean)/std`, 3×224×224.
fn picture(rng: &mut Rng) -> Vec<f32> {
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    let blobs: Vec<(f32, f32, f32, [f32; 3])> = (0..6)
        .map(|_| {
            let centre = (rng.uniform() * 224.0, rng.uniform() * 224.0);
            let colour = [rng.uniform(), rng.uniform(), rng.uniform()];
            (centre.0, centre.1, 20.0 + rng.uniform() * 60.0, colour)
        })
        .collect();
    let mut out = vec![0.0; 3 * 224 * 224];
    for c in 0..3 {
        for y in 0..224 {
            for x in 0..224 {
                let (fx, fy) = (x as f32, y as f32);
                let mut v = 0.3 + 0.2 * fx / 224.0 + 0.1 * (fy / 37.0).sin() * (fx / 53.0).cos();
                for (bx, by, r, colour) in &blobs {
                    let d2 = ((fx - bx).powi(2) + (fy - by).powi(2)) / (r * r);
                    v += 0.5 * (colour[c] - 0.5) * (-d2).exp();
                }
                let level = (v * 255.0 + rng.normal() * 1.5).round().clamp(0.0, 255.0);
                out[(c * 224 + y) * 224 + x] = (level / 255.0 - mean[c]) / std[c];
            }
        }
    }
    out
}

/// A square feature map: channels × side × side.
struct Map {
    data: Vec<f32>,
    channels: usize,
    side: usize,
}

/// A 2-d convolution with He-initialised weights and small biases.
fn conv(
    input: &Map,
    out_channels: usize,
    k: usize,
    stride: usize,
    pad: usize,
    rng: &mut Rng,
) -> Map {
    let (c_in, h) = (input.channels, input.side);
    let side = (h + 2 * pad - k) / stride + 1;
    let std = (2.0 / (c_in * k * k) as f32).sqrt();
    let mut data = vec![0.0f32; out_channels * side * side];
    for o in 0..out_channels {
        let plane = &mut data[o * side * side..(o + 1) * side * side];
        let bias = rng.normal() * 0.1;
        plane.iter_mut().for_each(|v| *v = bias);
        for i in 0..c_in {
            for ky in 0..k {
                for kx in 0..k {
                    let w = rng.normal() * std;
                    for y in 0..side {
                        let iy = (y * stride + ky) as isize - pad as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let row = &input.data[(i * h + iy as usize) * h..][..h];
                        for x in 0..side {
                            let ix = (x * stride + kx) as isize - pad as isize;
                            if ix >= 0 && ix < h as isize {
                                plane[y * side + x] += w * row[ix as usize];
                            }
                        }
                    }
                }
            }
        }
    }
    Map {
        data,
        channels: out_channels,
        side,
    }
}

fn relu(map: &Map, threshold: f32) -> Map {
    Map {
        data: map.data.iter().map(|&v| (v - threshold).max(0.0)).collect(),
        channels: map.channels,
        side: map.side,
    }
}

/// 3×3 max pooling, stride 2, padding 1.
fn max_pool(map: &Map) -> Map {
    let (h, side) = (map.side, (map.side - 1) / 2 + 1);
    let mut data = vec![f32::NEG_INFINITY; map.channels * side * side];
    for c in 0..map.channels {
        for y in 0..side {
            for x in 0..side {
                for (dy, dx) in (0..3).flat_map(|dy| (0..3).map(move |dx| (dy, dx))) {
                    let (iy, ix) = ((2 * y + dy) as isize - 1, (2 * x + dx) as isize - 1);
                    if iy >= 0 && ix >= 0 && iy < h as isize && ix < h as isize {
                        let v = map.data[(c * h + iy as usize) * h + ix as usize];
                        let o = &mut data[(c * side + y) * side + x];
                        *o = o.max(v);
                    }
                }
            }
        }
    }
    Map {
        data,
        channels: map.channels,
        side,
    }
}

/// Zero mean, unit variance over the whole map, as a batch norm would leave it.
fn normalise(map: &Map) -> Map {
    let n = map.data.len() as f32;
    let mean = map.data.iter().sum::<f32>() / n;
    let var = map.data.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
    Map {
        data: map.data.iter().map(|v| (v - mean) / var.sqrt()).collect(),
        channels: map.channels,
        side: map.side,
    }
}

/// The benchmark's tensors: name, shape, values.
fn tensors() -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let image = Map {
        data: picture(&mut rng),
        channels: 3,
        side: 224,
    };
    let alexnet = relu(&conv(&image, 64, 11, 4, 2, &mut rng), 0.0);
    let pool = max_pool(&relu(&conv(&image, 64, 7, 2, 3, &mut rng), 0.0));
    let preact = normalise(&conv(&pool, 64, 3, 1, 1, &mut rng));
    let sparse = relu(&preact, 0.52);
    let shape = |m: &Map| vec![1, m.channels, m.side, m.side];
    vec![
        ("alexnet_relu", shape(&alexnet), alexnet.data),
        ("resnet18_pool", shape(&pool), pool.data),
        ("resnet18_relu", shape(&sparse), sparse.data),
        ("resnet18_preact", shape(&preact), preact.data),
        ("image", shape(&image), image.data),
    ]
}

fn codecs(c: &mut Criterion) {
    let tensors = tensors();
    let limits = Limits::default();
    println!(
        "{:<16} {:>6} {:<14} {:>10} {:>7} {:>7} {:>10}",
        "tensor", "zeros", "codec", "wire bytes", "ratio", "layout", "max error"
    );
    for (name, shape, values) in &tensors {
        let zeros = values.iter().filter(|&&v| v == 0.0).count() as f64 / values.len() as f64;
        for codec in Codec::ALL {
            let wire = WireTensor::encode(shape, values, codec).expect("encodes");
            let back = wire.decode(&limits).expect("decodes");
            let error = values
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let layout = match (codec.is_compressed(), wire.bytes.first()) {
                (true, Some(1)) => "shuffle",
                (true, _) => "plain",
                (false, _) => "-",
            };
            println!(
                "{name:<16} {:>5.1}% {:<14} {:>10} {:>7.2} {layout:>7} {error:>10.3e}",
                100.0 * zeros,
                codec.name(),
                wire.bytes.len(),
                (values.len() * 4) as f64 / wire.bytes.len() as f64,
            );
        }
    }
    for (name, shape, values) in &tensors {
        let mut group = c.benchmark_group(format!("codecs/{name}"));
        group.sample_size(10);
        group.throughput(Throughput::BytesDecimal((values.len() * 4) as u64));
        for codec in Codec::ALL {
            group.bench_function(BenchmarkId::new("encode", codec.name()), |b| {
                b.iter(|| WireTensor::encode(shape, black_box(values), codec).expect("encodes"))
            });
            let wire = WireTensor::encode(shape, values, codec).expect("encodes");
            group.bench_function(BenchmarkId::new("decode", codec.name()), |b| {
                b.iter(|| black_box(&wire).decode(&limits).expect("decodes"))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, codecs);
criterion_main!(benches);
