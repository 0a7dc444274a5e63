//! Depthwise 2-D convolution (`groups = in = out`): each channel convolved with its own
//! filter, a plane per task, with the bias and the activation applied to the finished plane.
//! Output rows accumulate one kernel tap at a time over the columns where the tap lands inside
//! the input, so the inner loop has no padding checks. A strided layer first deals each plane's
//! columns out by their remainder modulo the stride, so that every tap reads contiguous input
//! and the inner loop vectorises at every stride.

use rayon::prelude::*;

use super::conv::{Activation, ConvShape, inside_columns};
use super::gemm::ShapeError;

/// A depthwise convolution ready to run.
#[derive(Debug, Clone)]
pub(crate) struct DepthwiseConv {
    shape: ConvShape,
    /// `[channels, kh, kw]`, PyTorch's `[channels, 1, kh, kw]`.
    weight: Vec<f32>,
    /// `[channels]`.
    bias: Vec<f32>,
    activation: Activation,
}

impl DepthwiseConv {
    /// Takes PyTorch's `[channels, 1, kh, kw]` weight and `[channels]` bias.
    pub(crate) fn new(
        shape: ConvShape,
        weight: Vec<f32>,
        bias: Vec<f32>,
        activation: Activation,
    ) -> Result<DepthwiseConv, ShapeError> {
        let taps = shape.kernel[0] * shape.kernel[1];
        if shape.in_channels != shape.out_channels
            || weight.len() != shape.out_channels * taps
            || bias.len() != shape.out_channels
        {
            return Err(ShapeError(format!(
                "a depthwise convolution of {} channels needs {} weights and {} biases, not {} and {}",
                shape.out_channels,
                shape.out_channels * taps,
                shape.out_channels,
                weight.len(),
                bias.len()
            )));
        }
        Ok(DepthwiseConv {
            shape,
            weight,
            bias,
            activation,
        })
    }

    /// Convolves `x`, `[batch, channels, h, w]`, into `[batch, channels, ho, wo]`.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        [h, w]: [usize; 2],
        [ho, wo]: [usize; 2],
    ) -> Result<Vec<f32>, ShapeError> {
        let s = &self.shape;
        let channels = s.out_channels;
        if h * w == 0 || x.len() % (channels * h * w) != 0 {
            return Err(ShapeError(format!(
                "the input holds {} values, not a multiple of {channels}x{h}x{w}",
                x.len()
            )));
        }
        let [kh, kw] = s.kernel;
        let [sh, sw] = s.stride;
        let [ph, _] = s.padding;
        let [dh, _] = s.dilation;
        let taps: Vec<TapColumns> = (0..kw)
            .map(|kx| TapColumns::new(s, kx, [h, w], wo))
            .collect();
        let mut out = vec![0.0f32; x.len() / (h * w) * ho * wo];
        out.par_chunks_mut(ho * wo)
            .zip(x.par_chunks(h * w))
            .enumerate()
            .for_each_init(Vec::new, |scratch, (plane, (y, input))| {
                let c = plane % channels;
                let filter = &self.weight[c * kh * kw..(c + 1) * kh * kw];
                let split = split_phases(input, w, sw, scratch);
                y.fill(self.bias[c]);
                for (oy, row) in y.chunks_mut(wo).enumerate() {
                    for ky in 0..kh {
                        let iy = (oy * sh + ky * dh).wrapping_sub(ph);
                        if iy >= h {
                            continue;
                        }
                        for (tap, columns) in filter[ky * kw..(ky + 1) * kw].iter().zip(&taps) {
                            if columns.first == columns.end {
                                continue;
                            }
                            let dst = &mut row[columns.first..columns.end];
                            let at =
                                columns.phase_offset + iy * columns.phase_width + columns.start;
                            let src = &split[at..at + dst.len()];
                            for (d, &v) in dst.iter_mut().zip(src) {
                                *d += tap * v;
                            }
                        }
                    }
                }
                self.activation.apply(y);
            });
        Ok(out)
    }
}

/// Where one kernel column lands: output columns `first..end` read real input (not padding),
/// output column `first + j` reading column `start + j` of its input phase (see
/// [`split_phases`]), whose rows are `phase_width` long and start at `phase_offset`.
#[derive(Debug, Clone, Copy)]
struct TapColumns {
    first: usize,
    end: usize,
    phase_offset: usize,
    phase_width: usize,
    start: usize,
}

impl TapColumns {
    fn new(s: &ConvShape, kx: usize, [h, w]: [usize; 2], wo: usize) -> TapColumns {
        let stride = s.stride[1];
        let shift = kx * s.dilation[1];
        let (first, end) = inside_columns(shift, [stride, s.padding[1]], w, wo);
        // Input column of output column `first` (at least 0 there, by `inside_columns`).
        let ix0 = (first * stride + shift).saturating_sub(s.padding[1]);
        let (phase, width) = (ix0 % stride, |q: usize| {
            w.saturating_sub(q).div_ceil(stride)
        });
        TapColumns {
            first,
            end: end.max(first),
            phase_offset: (0..phase).map(width).sum::<usize>() * h,
            phase_width: width(phase),
            start: ix0 / stride,
        }
    }
}

/// A plane's (`[h, w]`) columns dealt out by their remainder modulo the stride, phase after
/// phase, in `scratch`: phase `q` holds input columns `q, q + stride, q + 2·stride, …` of every
/// row, so that each kernel tap of a strided convolution reads contiguous input. At stride 1 the
/// plane is its own single phase and is returned as it is.
fn split_phases<'a>(
    input: &'a [f32],
    w: usize,
    stride: usize,
    scratch: &'a mut Vec<f32>,
) -> &'a [f32] {
    if stride == 1 {
        return input;
    }
    scratch.clear();
    for q in 0..stride {
        for row in input.chunks_exact(w) {
            scratch.extend(row.iter().skip(q).step_by(stride));
        }
    }
    scratch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_is_convolved_with_its_own_filter() {
        for (stride, padding, dilation) in [
            (1, 1, 1),
            (2, 1, 1),
            (1, 2, 2),
            (2, 0, 1),
            (3, 1, 1),
            (2, 3, 1),
        ] {
            let (c, h, w) = (3, 7, 6);
            let shape = ConvShape {
                in_channels: c,
                out_channels: c,
                kernel: [3, 3],
                stride: [stride; 2],
                padding: [padding; 2],
                dilation: [dilation; 2],
            };
            let x: Vec<f32> = (0..2 * c * h * w)
                .map(|i| ((i * 5) % 13) as f32 - 6.0)
                .collect();
            let weight: Vec<f32> = (0..c * 9)
                .map(|i| ((i * 3) % 7) as f32 / 4.0 - 0.5)
                .collect();
            let bias = vec![0.5, -0.25, 1.0];
            let out = |len: usize| (len + 2 * padding - dilation * 2 - 1) / stride + 1;
            let (ho, wo) = (out(h), out(w));
            let conv = DepthwiseConv::new(shape, weight.clone(), bias.clone(), Activation::Relu6)
                .expect("packs");
            let y = conv.forward(&x, [h, w], [ho, wo]).expect("runs");
            assert_eq!(y.len(), 2 * c * ho * wo);
            for plane in 0..2 * c {
                let ch = plane % c;
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut want = bias[ch];
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let iy = (oy * stride + ky * dilation) as isize - padding as isize;
                                let ix = (ox * stride + kx * dilation) as isize - padding as isize;
                                if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                    want += weight[ch * 9 + ky * 3 + kx]
                                        * x[plane * h * w + iy as usize * w + ix as usize];
                                }
                            }
                        }
                        let got = y[(plane * ho + oy) * wo + ox];
                        assert!((got - want.clamp(0.0, 6.0)).abs() < 1e-5, "{got} {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn mismatched_weights_are_refused() {
        let shape = ConvShape {
            in_channels: 2,
            out_channels: 2,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
        };
        assert!(DepthwiseConv::new(shape, vec![0.0; 17], vec![0.0; 2], Activation::Relu).is_err());
        let conv = DepthwiseConv::new(shape, vec![0.0; 18], vec![0.0; 2], Activation::Relu)
            .expect("packs");
        assert!(conv.forward(&[0.0; 7], [2, 2], [2, 2]).is_err());
    }
}
