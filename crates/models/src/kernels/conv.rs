//! Dense 2-D convolution, with the bias and the activation in the epilogue: im2col + gemm, or
//! one of the crate's own kernels.
//!
//! The weight is packed once, at load, for the layout that suits the layer's shape (each rule
//! measured on this crate's layer shapes):
//!
//! - **Pixel-major** (most layers): the input is turned to channels-last, each output pixel's
//!   patch is a row of the im2col matrix (`(ky, kx, c)` order, so every tap copies `in`
//!   contiguous channels), and `[pixels, K] × [K, out]` runs tile by tile, a tile per thread,
//!   each tile's patches still in that core's cache. The `[pixels, out]` result is turned back
//!   to NCHW.
//! - **Channel-major** (few output pixels, where a pixel tile per thread leaves gemm too
//!   little to do): `[out, K] × [K, pixels]` lands straight in the NCHW output, with PyTorch's
//!   `[out, in, kh, kw]` weight as the `[out, K]` matrix, the im2col rows built a tile at a
//!   time and gemm spreading each product over every thread.
//! - **Winograd** (3×3, stride-1 layers of at least 16 input channels, but for small maps with
//!   few channels, where im2col wins): F(4×4, 3×3), or F(2×2, 3×3) on smaller maps, in
//!   [`winograd`].
//! - **Pointwise** (1×1 unpadded layers of at least 16 input channels): in [`pointwise`],
//!   straight from the NCHW input into the NCHW output, the weight packed for its register
//!   tiles.
//! - **Patches** (7×7 maps and smaller, on AVX-512 or AVX2): in [`patches`], the input's
//!   patches gathered a few pixels at a time and multiplied in register tiles whose vectors
//!   run over output channels.
//! - **Direct** (fewer than 16 input channels, as in an RGB stem, whose im2col matrix would be
//!   `in · kh · kw` times the input; and on AVX2, 3×3 layers at stride 2 onto maps larger than
//!   14×14): in [`direct`], on padded planes of the input.

use rayon::prelude::*;

use super::aligned::Aligned;
use super::choice::ConvKernel;
use super::direct;
use super::gemm::{MatRef, gemm};
use super::patches;
use super::plane::Epilogue;
use super::pointwise;
use super::recycled;
use super::scratch::Scratch;
use super::transpose::{Planes, channels_last};
use super::vector::VectorPath;
use super::winograd::{self, Tiling};
use super::{Activation, ConvShape, Operands, ShapeError};

/// im2col tiles hold at most this many bytes, so that a tile is still in cache when gemm reads
/// it.
const COL_TILE_BYTES: usize = 1 << 20;

/// Layers with fewer output pixels than this run channel-major.
const PIXEL_MAJOR_MIN_PIXELS: usize = 128;

/// Layers with fewer input channels than this run direct ([`direct`]): their im2col rows are
/// short and many. Inside a pass, one thread, against the channel-major product: AlexNet's
/// 11×11 stem 1.6–1.8 ms against 2.5–3.2, ResNet-18's 7×7 stem 3.0–3.2 against 4.4–4.5,
/// GoogLeNet's 2.9–3.1 against 4.5–4.7, VGG16's first layer 3.2–3.4 against 4.5–5.1,
/// MobileNetV2's 0.40–0.67 against 0.76–0.79, LeNet's two 0.007 and 0.009 against 0.013 and
/// 0.026. (The pixel-major product and its transpose back to NCHW was slower still.)
const PIXEL_MAJOR_MIN_CHANNELS: usize = 16;

/// 3×3 layers with fewer input channels than this run direct too where their output is
/// larger than 14×14: Winograd's products over so few channels are too thin to pay for
/// their transforms. Machine A, in-pass, medians of 4–5 alternating processes,
/// GoogLeNet's inception3a.branch3.1 (16 → 32, 3×3 on 28×28) against Winograd:
/// AVX-512 0.131 → 0.078 ms on one thread, 0.083 → 0.060 on two; AVX2 0.178 → 0.111 and
/// 0.115 → 0.107. On 14×14 maps direct lost (inception4a–4c's 16 and 24 → 48 and 64,
/// 1.13–1.38× the im2col product's), and from 32 channels on it gained nothing (inception3b's
/// 32 → 96 on 28×28, 0.99–1.02×).
const THIN_DIRECT_CHANNELS: usize = 32;

/// Layers with at most this many output pixels (7×7 maps) run on gathered patches
/// ([`patches`]) where the CPU has AVX-512. Inside a pass, one thread, against Winograd's
/// F(2×2, 3×3): ResNet-50's 512→512 3×3 layers on 7×7 maps 3.8–5.4 ms against 3.0–3.4 (ONNX
/// Runtime 2.8–2.9), ResNet-18's 4.9 against 3.2–3.3; with Winograd's own products
/// ([`tile_products`](super::tile_products)) the same within 2 % in ResNet-18's and ResNet-50's
/// passes, GoogLeNet's 5×5 layers on 7×7 maps 1.16× (machine A). They lose on 13×13 and 14×14
/// maps (machine D: AlexNet's 3×3 layers 2.47/3.28/2.18 ms against Winograd's 1.72/2.22/1.52),
/// as do strided layers on larger maps (ResNet-50's 128→128 layer from 56×56 to 28×28 3.01
/// against 2.62); AVX2 has a limit of its own, [`PATCHES_MAX_PIXELS_16`].
const PATCHES_MAX_PIXELS: usize = 64;

/// On AVX2, layers with at most this many output pixels (14×14 maps) run on gathered patches,
/// unless they are 3×3 layers that Winograd pays for ([`winograd::pays`]): with Winograd's own
/// products, machine A, one thread, in-pass, medians of 3 alternating processes, ResNet-18's
/// 512→512 layers on 7×7 maps 2.71–2.80 → 2.38–2.40 ms, ResNet-50's 2.85–2.97 → 2.44–2.47,
/// AlexNet's on 13×13 maps (whose 2×2 tiles overhang the map) 2.53/3.65/2.34 → 1.69/2.31/1.59
/// (ONNX Runtime's whole layers 2.17/2.87/1.94 on that machine). Strided layers to 14×14 stay:
/// ResNet-18's to 14×14 1.32 ms against the pixel-major product's 1.61 (machine D). 5×5 layers
/// keep patches (measured with gemm's products: three 256 → 256 layers on a 14×14 map 6.5 ms
/// against F(2×2, 5×5)'s 7.6).
const PATCHES_MAX_PIXELS_16: usize = 196;

/// How the product is laid out (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `[pixels, K] × [K, out]` from a channels-last copy of the input; the weight is
    /// `[K, out]` with K in `(ky, kx, c)` order.
    PixelMajor,
    /// `[out, K] × [K, pixels]`; the weight is `[out, K]` with K in `(c, ky, kx)` order.
    ChannelMajor,
    /// Winograd's F(4×4, 3×3) or F(2×2, 3×3) for 3×3, stride-1 layers (see [`winograd`]); the
    /// weight is one transformed `[in, out]` matrix per point of the tiling's window.
    Winograd(Tiling),
    /// Direct, on padded planes of the input (see [`direct`]); the weight is
    /// `[out / 8, in · kh · kw, 8]`, as the 1×1 kernel packs its own.
    Direct,
    /// A 1×1 unpadded convolution (see [`pointwise`]); the weight is `[out / 8, in, 8]`.
    Pointwise,
    /// Gathered patches times the weight in tiles over output channels (see [`patches`]);
    /// the weight is `[out / 48, K, 48]`.
    Patches {
        /// Output channels per block of the packed weight.
        block: usize,
    },
}

/// Whether a layer of shape `s` with `pixels` output pixels runs pixel-major: most do, but not
/// one with few pixels, nor one with few input channels (which runs direct), nor an unpadded
/// 1×1 one (whose NCHW input, every stride-th pixel of it if strided, is already the
/// channel-major patch matrix, so it needs no transpose).
fn suits_pixel_major(s: &ConvShape, pixels: usize) -> bool {
    pixels >= PIXEL_MAJOR_MIN_PIXELS
        && s.in_channels >= PIXEL_MAJOR_MIN_CHANNELS
        && !(s.kernel == [1, 1] && s.padding == [0, 0])
}

/// Whether a layer of shape `s` onto `pixels` output pixels runs direct on AVX2 although it
/// has many input channels: a 3×3 layer at stride 2 onto a map larger than
/// [`PATCHES_MAX_PIXELS_16`] pixels. Machine D, one thread, a layer alone against the
/// pixel-major product: ResNet-50's 128 → 128 from 56×56 to 28×28 2.91 → 2.48 ms (ONNX
/// Runtime 2.09 in-pass), ResNet-18's 64 → 128 1.47 → 1.28. On AVX-512 the product stays
/// (2.30–2.58 against 2.39, 1.15 against 1.19), as do such layers onto 14×14 maps on AVX2
/// (the patches kernel, within the noise of direct).
fn strided_direct_on_avx2(s: &ConvShape, pixels: usize) -> bool {
    s.kernel == [3, 3] && s.stride == [2, 2] && pixels > PATCHES_MAX_PIXELS_16
}

/// The layout a layer of shape `s` with an `output` of `ho × wo` pixels runs in.
pub(crate) fn choose_layout(s: &ConvShape, output: [usize; 2]) -> Layout {
    layout_on(s, output, VectorPath::current())
}

/// [`choose_layout`] for the kernels of vector path `path`.
fn layout_on(s: &ConvShape, output: [usize; 2], path: VectorPath) -> Layout {
    let pixels = output[0] * output[1];
    if s.in_channels < PIXEL_MAJOR_MIN_CHANNELS
        || (s.in_channels < THIN_DIRECT_CHANNELS
            && s.kernel == [3, 3]
            && pixels > PATCHES_MAX_PIXELS_16)
        || (path == VectorPath::Avx2 && strided_direct_on_avx2(s, pixels))
    {
        return Layout::Direct;
    }
    if pointwise::suits(s) {
        return Layout::Pointwise;
    }
    let pixel_major = suits_pixel_major(s, pixels);
    let winograd = winograd::pays(s, pixels, pixel_major);
    let patches = match path {
        VectorPath::Avx512 => pixels <= PATCHES_MAX_PIXELS,
        VectorPath::Avx2 => pixels <= PATCHES_MAX_PIXELS_16 && !(winograd && s.kernel == [3, 3]),
        VectorPath::Other => false,
    };
    if patches {
        return Layout::Patches {
            block: patches::block_for(path),
        };
    }
    if winograd {
        Layout::Winograd(Tiling::for_layer(s, output))
    } else if pixel_major {
        Layout::PixelMajor
    } else {
        Layout::ChannelMajor
    }
}

/// A convolution ready to run: its shape, packed weight, bias and activation.
#[derive(Debug, Clone)]
pub(crate) struct PackedConv {
    shape: ConvShape,
    layout: Layout,
    /// The weight as [`Layout`] describes it, on a cache line (the kernels load it in vectors).
    weight: Aligned,
    /// `[out]` (zeros for a layer without bias).
    bias: Vec<f32>,
    activation: Activation,
}

impl PackedConv {
    /// Packs PyTorch's `[out, in, kh, kw]` weight and `[out]` bias for a layer with an
    /// `output` of `ho × wo` pixels per sample.
    pub(crate) fn new(
        shape: ConvShape,
        weight: Vec<f32>,
        bias: Vec<f32>,
        activation: Activation,
        output: [usize; 2],
    ) -> Result<PackedConv, ShapeError> {
        let layout = choose_layout(&shape, output);
        PackedConv::with_layout(shape, layout, weight, bias, activation)
    }

    fn with_layout(
        shape: ConvShape,
        layout: Layout,
        weight: Vec<f32>,
        bias: Vec<f32>,
        activation: Activation,
    ) -> Result<PackedConv, ShapeError> {
        if weight.len() != shape.out_channels * shape.patch_len()
            || bias.len() != shape.out_channels
        {
            return Err(ShapeError(format!(
                "a {}x{} convolution needs {} weights and {} biases, not {} and {}",
                shape.kernel[0],
                shape.kernel[1],
                shape.out_channels * shape.patch_len(),
                shape.out_channels,
                weight.len(),
                bias.len()
            )));
        }
        let weight = match layout {
            Layout::PixelMajor => taps_by_out(&shape, &weight),
            Layout::ChannelMajor => weight,
            Layout::Direct => direct::pack(&shape, &weight),
            Layout::Pointwise => pointwise::pack(&shape, &weight),
            Layout::Patches { block } => patches::pack(&shape, &weight, block),
            Layout::Winograd(tiling) if winograd::suits_tiling(&shape, tiling) => {
                winograd::pack(&shape, tiling, &weight)
            }
            Layout::Winograd(tiling) => {
                return Err(ShapeError(format!(
                    "Winograd's {tiling:?} tiling does not compute a {}x{} convolution of stride {}",
                    shape.kernel[0], shape.kernel[1], shape.stride[0]
                )));
            }
        };
        Ok(PackedConv {
            shape,
            layout,
            weight: Aligned::copy_of(&weight),
            bias,
            activation,
        })
    }

    /// Convolves `x`, `[batch, in, h, w]` NCHW, into `[batch, out, ho, wo]`; returns the output
    /// and `[ho, wo]`.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        batch: usize,
        hw: [usize; 2],
    ) -> Result<(Vec<f32>, [usize; 2]), ShapeError> {
        let [ho, wo] = self.output(hw)?;
        let out = recycled::take(batch * self.shape.out_channels * ho * wo);
        let epilogue = Epilogue {
            activation: self.activation,
            residual: false,
        };
        self.run(x, batch, hw, out, epilogue)
    }

    /// Whether [`PackedConv::forward_onto`] can run this layer: its kernel adds a residual in
    /// its epilogue ([`ConvKernel::adds_residual`]) and it has no activation of its own.
    pub(crate) fn adds_residual(&self) -> bool {
        ConvKernel::of_layout(self.layout).adds_residual()
            && self.activation == Activation::Identity
    }

    /// [`PackedConv::forward`] with a residual block's addition and activation in the
    /// epilogue: `residual`, of the output's shape, is added to every result before
    /// `activation`, and the output is written over it. Only for a layer that
    /// [`adds_residual`](PackedConv::adds_residual).
    pub(crate) fn forward_onto(
        &self,
        x: &[f32],
        batch: usize,
        hw: [usize; 2],
        residual: Vec<f32>,
        activation: Activation,
    ) -> Result<(Vec<f32>, [usize; 2]), ShapeError> {
        let [ho, wo] = self.output(hw)?;
        let len = batch * self.shape.out_channels * ho * wo;
        if !self.adds_residual() || residual.len() != len {
            return Err(ShapeError(format!(
                "a residual of {} values cannot be added in the epilogue of this convolution \
                 ({:?} layout, {:?} activation, {len} outputs)",
                residual.len(),
                self.layout,
                self.activation
            )));
        }
        let epilogue = Epilogue {
            activation,
            residual: true,
        };
        self.run(x, batch, hw, residual, epilogue)
    }

    /// The output rows and columns for `[h, w]` inputs.
    fn output(&self, [h, w]: [usize; 2]) -> Result<[usize; 2], ShapeError> {
        self.shape
            .output(h, w)
            .ok_or_else(|| ShapeError(format!("a {h}x{w} input is smaller than the kernel")))
    }

    /// Runs the layer on `x` into `out` (which holds a residual where `epilogue` says so).
    fn run(
        &self,
        x: &[f32],
        batch: usize,
        [h, w]: [usize; 2],
        mut out: Vec<f32>,
        epilogue: Epilogue,
    ) -> Result<(Vec<f32>, [usize; 2]), ShapeError> {
        let s = &self.shape;
        let [ho, wo] = self.output([h, w])?;
        let (plane_in, pixels) = (h * w, ho * wo);
        if x.len() != batch * s.in_channels * plane_in
            || out.len() != batch * s.out_channels * pixels
        {
            return Err(ShapeError(format!(
                "the input holds {} values, not {batch}x{}x{h}x{w}",
                x.len(),
                s.in_channels
            )));
        }
        let operands = Operands {
            weight: &self.weight,
            bias: &self.bias,
            activation: epilogue.activation,
            residual: epilogue.residual,
        };
        for (sample, y) in x
            .chunks(s.in_channels * plane_in)
            .zip(out.chunks_mut(s.out_channels * pixels))
        {
            match self.layout {
                Layout::PixelMajor => self.pixel_major(sample, [h, w], [ho, wo], y)?,
                Layout::ChannelMajor => {
                    self.channel_major(sample, [h, w], [ho, wo], y, epilogue)?
                }
                Layout::Direct => direct::forward(s, operands, sample, [h, w], [ho, wo], y)?,
                Layout::Pointwise => pointwise::forward(s, operands, sample, [h, w], [ho, wo], y)?,
                Layout::Patches { block } => {
                    patches::forward(s, block, operands, sample, [h, w], [ho, wo], y)?
                }
                Layout::Winograd(tiling) => {
                    winograd::forward(s, tiling, operands, sample, [h, w], [ho, wo], y)?
                }
            }
        }
        Ok((out, [ho, wo]))
    }

    /// One sample, pixel-major: `y` (`[out, pixels]`) from `sample` (`[in, h, w]`).
    fn pixel_major(
        &self,
        sample: &[f32],
        [h, w]: [usize; 2],
        [ho, wo]: [usize; 2],
        y: &mut [f32],
    ) -> Result<(), ShapeError> {
        let s = &self.shape;
        let (k, out_c, pixels) = (s.patch_len(), s.out_channels, ho * wo);
        let mut channels_last = Scratch::take(sample.len());
        transpose(sample, s.in_channels, h * w, &mut channels_last);
        let threads = rayon::current_num_threads().max(1);
        let tile = (COL_TILE_BYTES / 4 / k)
            .min(pixels.div_ceil(2 * threads))
            .max(1);
        let weight = MatRef {
            data: &self.weight,
            rows: k,
            cols: out_c,
            row_stride: out_c,
        };
        let mut result = Scratch::take(pixels * out_c);
        result
            .par_chunks_mut(tile * out_c)
            .enumerate()
            .try_for_each(|(t, dst)| {
                let (start, rows) = (t * tile, dst.len() / out_c);
                for row in dst.chunks_mut(out_c) {
                    row.copy_from_slice(&self.bias);
                }
                let mut col = Scratch::take(rows * k);
                im2col_pixel_major(s, &channels_last, [h, w], wo, start, &mut col);
                let patches = MatRef {
                    data: &col,
                    rows,
                    cols: k,
                    row_stride: k,
                };
                gemm(dst, out_c, patches, weight, true, false)?;
                self.activation.apply(dst);
                Ok(())
            })?;
        transpose(&result, pixels, out_c, y);
        Ok(())
    }

    /// One sample, channel-major: `y` (`[out, pixels]`) from `sample` (`[in, h, w]`).
    fn channel_major(
        &self,
        sample: &[f32],
        [h, w]: [usize; 2],
        [ho, wo]: [usize; 2],
        y: &mut [f32],
        epilogue: Epilogue,
    ) -> Result<(), ShapeError> {
        let s = &self.shape;
        let (k, pixels) = (s.patch_len(), ho * wo);
        let weight = MatRef {
            data: &self.weight,
            rows: s.out_channels,
            cols: k,
            row_stride: k,
        };
        y.par_chunks_mut(pixels)
            .zip(&self.bias)
            .for_each(|(row, &b)| match epilogue.residual {
                true => row.iter_mut().for_each(|v| *v += b),
                false => row.fill(b),
            });
        let tile = (COL_TILE_BYTES / 4 / k).clamp(1, pixels);
        let mut col = Scratch::take(k * tile);
        for start in (0..pixels).step_by(tile) {
            let len = tile.min(pixels - start);
            let col = &mut col[..k * len];
            im2col(s, sample, [h, w], wo, start, len, col);
            let patches = MatRef {
                data: col,
                rows: k,
                cols: len,
                row_stride: len,
            };
            gemm(&mut y[start..], pixels, weight, patches, true, true)?;
        }
        if epilogue.activation != Activation::Identity {
            y.par_chunks_mut(pixels)
                .for_each(|row| epilogue.activation.apply(row));
        }
        Ok(())
    }
}

/// PyTorch's `[out, in, kh, kw]` weight as `[(ky, kx, c), out]`, the pixel-major `[K, out]`.
fn taps_by_out(s: &ConvShape, weight: &[f32]) -> Vec<f32> {
    let [kh, kw] = s.kernel;
    let (cin, cout) = (s.in_channels, s.out_channels);
    let mut packed = vec![0.0f32; weight.len()];
    for o in 0..cout {
        for c in 0..cin {
            for ky in 0..kh {
                for kx in 0..kw {
                    packed[((ky * kw + kx) * cin + c) * cout + o] =
                        weight[((o * cin + c) * kh + ky) * kw + kx];
                }
            }
        }
    }
    packed
}

/// Pixels (or channels) per block of a transpose: a block of rows stays in cache while its
/// columns are written.
const TRANSPOSE_BLOCK: usize = 32;

/// `src`, `[rows, cols]` row-major, into `dst` as `[cols, rows]`, in parallel blocks of output
/// rows.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    dst.par_chunks_mut(TRANSPOSE_BLOCK * rows)
        .enumerate()
        .for_each(|(b, block)| {
            let planes = Planes {
                src,
                plane: cols,
                at: b * TRANSPOSE_BLOCK,
                pixels: block.len() / rows.max(1),
                channels: rows,
            };
            channels_last(&planes, block);
        });
}

/// The patches of output pixels `start..` of one channels-last sample (`[h · w, in]`) into
/// `col` as a `[rows, K]` matrix, K in `(ky, kx, c)` order, zeros in the padding.
fn im2col_pixel_major(
    s: &ConvShape,
    input: &[f32],
    [h, w]: [usize; 2],
    wo: usize,
    start: usize,
    col: &mut [f32],
) {
    let cin = s.in_channels;
    let k = s.patch_len();
    for (j, patch) in col.chunks_mut(k).enumerate() {
        let (oy, ox) = ((start + j) / wo, (start + j) % wo);
        for (tap, dst) in patch.chunks_mut(cin).enumerate() {
            let (ky, kx) = (tap / s.kernel[1], tap % s.kernel[1]);
            let iy = (oy * s.stride[0] + ky * s.dilation[0]).wrapping_sub(s.padding[0]);
            let ix = (ox * s.stride[1] + kx * s.dilation[1]).wrapping_sub(s.padding[1]);
            if iy < h && ix < w {
                let at = (iy * w + ix) * cin;
                dst.copy_from_slice(&input[at..at + cin]);
            } else {
                dst.fill(0.0);
            }
        }
    }
}

/// The output columns `first..end` (of `wo`) whose input column `ox · stride + shift − pad`
/// lies inside a row of `w`: where a kernel tap `shift` columns to the right reads real input.
fn inside_columns(shift: usize, [stride, pad]: [usize; 2], w: usize, wo: usize) -> (usize, usize) {
    let first = pad.saturating_sub(shift).div_ceil(stride).min(wo);
    let end = if w + pad > shift {
        ((w + pad - shift - 1) / stride + 1).min(wo)
    } else {
        0
    };
    (first, end)
}

/// Fills `col` (`K × len`, row-major) with the patches of output pixels `start..start + len`
/// of one sample: element `(r, j)` is the input under kernel tap `r = (c, ky, kx)` for output
/// pixel `start + j`, or 0 in the padding.
fn im2col(
    s: &ConvShape,
    sample: &[f32],
    [h, w]: [usize; 2],
    wo: usize,
    start: usize,
    len: usize,
    col: &mut [f32],
) {
    let [kh, kw] = s.kernel;
    let [sh, sw] = s.stride;
    let [ph, pw] = s.padding;
    let [dh, dw] = s.dilation;
    col.par_chunks_mut(len)
        .with_min_len(8)
        .enumerate()
        .for_each(|(r, row)| {
            let (c, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
            let plane = &sample[c * h * w..(c + 1) * h * w];
            let shift = kx * dw;
            let (first_ox, end_ox) = inside_columns(shift, [sw, pw], w, wo);
            let mut j = 0;
            while j < len {
                let (oy, ox0) = ((start + j) / wo, (start + j) % wo);
                let run = (wo - ox0).min(len - j);
                let dst = &mut row[j..j + run];
                j += run;
                let iy = (oy * sh + ky * dh).wrapping_sub(ph);
                if iy >= h {
                    dst.fill(0.0);
                    continue;
                }
                let src = &plane[iy * w..(iy + 1) * w];
                let lo = first_ox.clamp(ox0, ox0 + run) - ox0;
                let hi = end_ox.clamp(ox0 + lo, ox0 + run) - ox0;
                dst[..lo].fill(0.0);
                dst[hi..].fill(0.0);
                if lo < hi {
                    let ix0 = (ox0 + lo) * sw + shift - pw;
                    if sw == 1 {
                        dst[lo..hi].copy_from_slice(&src[ix0..ix0 + hi - lo]);
                    } else {
                        for (d, ix) in dst[lo..hi].iter_mut().zip((ix0..).step_by(sw)) {
                            *d = src[ix];
                        }
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference_conv;

    fn check(s: ConvShape, hw: [usize; 2]) {
        let n_in = s.in_channels * hw[0] * hw[1];
        let x: Vec<f32> = (0..n_in)
            .map(|i| ((i * 37) % 23) as f32 / 11.0 - 1.0)
            .collect();
        let weight: Vec<f32> = (0..s.out_channels * s.patch_len())
            .map(|i| ((i * 13) % 17) as f32 / 8.0 - 1.0)
            .collect();
        let bias: Vec<f32> = (0..s.out_channels).map(|o| o as f32 * 0.25 - 0.5).collect();
        let want = reference_conv(&s, &x, &weight, &bias, hw);
        let mut layouts = vec![Layout::PixelMajor, Layout::ChannelMajor];
        layouts.extend(VectorPath::ALL.map(|path| Layout::Patches {
            block: patches::block_for(path),
        }));
        if pointwise::suits(&s) {
            layouts.push(Layout::Pointwise);
        }
        let tilings = [Tiling::F2, Tiling::F4, Tiling::F2Of5];
        layouts.extend(
            tilings
                .into_iter()
                .filter(|&t| winograd::suits_tiling(&s, t))
                .map(Layout::Winograd),
        );
        let activations = [Activation::Identity, Activation::Relu, Activation::Relu6];
        for (layout, activation) in layouts
            .into_iter()
            .flat_map(|l| activations.map(|a| (l, a)))
        {
            let conv = PackedConv::with_layout(s, layout, weight.clone(), bias.clone(), activation)
                .expect("packs");
            let (got, _) = conv.forward(&x, 1, hw).expect("runs");
            assert_eq!(got.len(), want.len(), "{s:?}");
            let through = |activation: Activation, w: f64| match activation {
                Activation::Identity => w,
                Activation::Relu => w.max(0.0),
                Activation::Relu6 => w.clamp(0.0, 6.0),
            };
            let outputs: Vec<f64> = want.iter().map(|&w| through(activation, w)).collect();
            assert_close(&got, &outputs, layout, &format!("{s:?} {activation:?}"));
            if !conv.adds_residual() {
                continue;
            }
            // A residual added in the epilogue, before each activation in turn.
            let residual: Vec<f32> = (0..want.len())
                .map(|i| ((i * 7) % 5) as f32 - 2.0)
                .collect();
            for after in activations {
                let (got, _) = conv
                    .forward_onto(&x, 1, hw, residual.clone(), after)
                    .expect("runs");
                let outputs: Vec<f64> = want
                    .iter()
                    .zip(&residual)
                    .map(|(&w, &r)| through(after, w + r as f64))
                    .collect();
                let what = format!("{s:?} {layout:?} plus a residual, then {after:?}");
                assert_close(&got, &outputs, layout, &what);
            }
        }
    }

    /// Checks `got` against `want`. im2col sums each output exactly as the definition does,
    /// so each value is held to 1e-4 of itself; Winograd's transforms mix a window's values,
    /// so its rounding follows the layer's scale: 1e-4 of the largest output (the bar the
    /// zoo's models are held to as a whole).
    fn assert_close(got: &[f32], want: &[f64], layout: Layout, what: &str) {
        let scale = want.iter().fold(1.0f64, |m, w| m.max(w.abs()));
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let bound = match layout {
                Layout::Winograd(_) => scale,
                _ => w.abs().max(1.0),
            };
            assert!(
                (g as f64 - w).abs() <= 1e-4 * bound,
                "{what} {layout:?} {i}: {g} {w}"
            );
        }
    }

    #[test]
    fn im2col_gemm_matches_the_definition() {
        let shape = ConvShape::square;
        check(shape(3, 5, 3, 1, 1, 1), [9, 7]);
        check(shape(4, 6, 1, 1, 0, 1), [5, 6]);
        check(shape(2, 3, 1, 2, 0, 1), [7, 7]);
        check(shape(3, 4, 11, 4, 2, 1), [31, 29]);
        check(shape(2, 3, 7, 2, 3, 1), [16, 13]);
        check(shape(3, 2, 3, 2, 1, 2), [10, 11]);
        check(shape(2, 2, 5, 1, 0, 1), [5, 5]);
        // 3×3 stride 1 (Winograd too): unpadded, padded wider than needed, and an even size.
        check(shape(5, 7, 3, 1, 0, 1), [8, 9]);
        check(shape(3, 4, 3, 1, 2, 1), [6, 5]);
        check(shape(17, 20, 3, 1, 1, 1), [12, 12]);
        // 5×5 stride 1 (Winograd's F(2×2, 5×5) too): padded, on an odd-sized map.
        check(shape(6, 9, 5, 1, 2, 1), [11, 13]);
        // Non-square kernels and padding wider than needed on one side.
        let mut s = shape(2, 3, 3, 1, 1, 1);
        s.kernel = [1, 3];
        s.padding = [0, 2];
        check(s, [4, 6]);
        // Many channels: im2col tiles of fewer pixels than the image.
        check(shape(600, 2, 3, 1, 1, 1), [33, 33]);
        // Winograd's two schedules, on pools of two threads and of one so that the split is
        // the same on any machine: 16 tiles of 2×2, or 4 or 9 of 4×4 (and 36 of 2×2 on one
        // thread), too few for a block per thread, go by output channels (shares of 16 and 4);
        // 36 tiles of 2×2 on two threads go by bands of rows of tiles (3 rows of 6 each, one
        // block a band), and so do 272 or 72 tiles (two threads: 6 bands of 3 rows of 16
        // tiles, 5 of 2 rows of 8, the last band
        // shorter; one thread: one band, in blocks of 55 and 15 tiles that start inside a
        // row), on an odd-sized output with 40 channels (scattered 16, 16 and 8 at a time).
        for threads in [2, 1] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a pool");
            pool.install(|| {
                check(shape(17, 20, 3, 1, 1, 1), [8, 8]);
                check(shape(17, 20, 3, 1, 1, 1), [12, 12]);
                check(shape(5, 40, 3, 1, 1, 1), [33, 31]);
                check(shape(17, 20, 5, 1, 2, 1), [27, 27]);
            });
        }
    }

    #[test]
    fn each_path_runs_small_maps_as_its_measurements_chose() {
        let shape = ConvShape::square;
        let patches = |path| Layout::Patches {
            block: patches::block_for(path),
        };
        let (avx512, avx2) = (VectorPath::Avx512, VectorPath::Avx2);
        let f2 = Layout::Winograd(Tiling::F2);
        // ResNet's 512→512 layers on 7×7 maps: patches on AVX-512, Winograd on the others.
        let seven = (shape(512, 512, 3, 1, 1, 1), [7, 7]);
        // AlexNet's 256→256 layer on a 13×13 map, whose 2×2 tiles overhang it.
        let thirteen = (shape(256, 256, 3, 1, 1, 1), [13, 13]);
        // ResNet-50's 256→256 layers on 14×14 maps, which 2×2 tiles cover exactly.
        let fourteen = (shape(256, 256, 3, 1, 1, 1), [14, 14]);
        // ResNet-18's strided 128→256 layer to a 14×14 map (no Winograd), and ResNet-50's
        // 128→128 one to a 28×28 map.
        let strided = (shape(128, 256, 3, 2, 1, 1), [14, 14]);
        let strided_large = (shape(128, 128, 3, 2, 1, 1), [28, 28]);
        // 5×5 layers on 28×28 maps: with 32 input channels, and with too few for Winograd.
        let wide = (shape(32, 96, 5, 1, 2, 1), [28, 28]);
        let thin = (shape(16, 32, 5, 1, 2, 1), [28, 28]);
        // A 5×5 layer on a 14×14 map.
        let small = (shape(256, 256, 5, 1, 2, 1), [14, 14]);
        // GoogLeNet's 16→32 3×3 layer on a 28×28 map: too few channels for Winograd to pay;
        // its 16→48 one on a 14×14 map (the im2col product).
        let thin_three = (shape(16, 32, 3, 1, 1, 1), [28, 28]);
        let thin_small = (shape(16, 48, 3, 1, 1, 1), [14, 14]);
        let f2_of_5 = Layout::Winograd(Tiling::F2Of5);
        let cases = [
            (seven, [patches(avx512), f2, f2]),
            (thirteen, [f2; 3]),
            (fourteen, [f2, f2, f2]),
            (
                strided,
                [Layout::PixelMajor, patches(avx2), Layout::PixelMajor],
            ),
            (
                strided_large,
                [Layout::PixelMajor, Layout::Direct, Layout::PixelMajor],
            ),
            (wide, [f2_of_5; 3]),
            (thin, [Layout::PixelMajor; 3]),
            (small, [f2_of_5, patches(avx2), f2_of_5]),
            (thin_three, [Layout::Direct; 3]),
            (
                thin_small,
                [Layout::PixelMajor, patches(avx2), Layout::PixelMajor],
            ),
        ];
        for ((s, output), layouts) in cases {
            for (path, want) in VectorPath::ALL.into_iter().zip(layouts) {
                assert_eq!(layout_on(&s, output, path), want, "{s:?} {output:?} {path}");
            }
        }
    }

    #[test]
    fn batches_are_independent_and_wrong_sizes_are_refused() {
        let s = ConvShape {
            in_channels: 2,
            out_channels: 2,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
        };
        let conv = PackedConv::new(
            s,
            vec![0.5; 36],
            vec![1.0, -1.0],
            Activation::Identity,
            [4, 4],
        )
        .expect("packs");
        let one: Vec<f32> = (0..32).map(|i| i as f32).collect();
        let two: Vec<f32> = one.iter().chain(&one).copied().collect();
        let (y1, _) = conv.forward(&one, 1, [4, 4]).expect("one");
        let (y2, hw) = conv.forward(&two, 2, [4, 4]).expect("two");
        assert_eq!(hw, [4, 4]);
        assert_eq!(&y2[..32], &y1[..]);
        assert_eq!(&y2[32..], &y1[..]);
        assert!(conv.forward(&one, 2, [4, 4]).is_err());
        assert!(
            PackedConv::new(s, vec![0.5; 35], vec![1.0, -1.0], Activation::Relu, [4, 4]).is_err()
        );
    }
}
