// Letterbox preprocessing on the GPU: a batch of uint8 BGR frames of different sizes -> the engine's
// input [B, 3, H, W] (RGB, CHW), float32 or float16, value * alpha[c] + beta[c] per output channel.
//
// Geometry: the host passes each frame's letterbox (df2infer.ops.letterbox.letterbox_geometry), so
// new size and padding are the CPU path's by construction, and the per-column / per-row source
// indices and 8-bit weights of OpenCV's bit-exact bilinear resize, cv2.INTER_LINEAR_EXACT
// (pipeline.linear_taps), which the CPU letterbox uses. The arithmetic is OpenCV's, all in integers:
// horizontal h = p0 * a0 + p1 * a1 (8 fractional bits), vertical (h0 * b0 + h1 * b1 + 2^15) >> 16.
// So the result equals the CPU letterbox exactly (no tolerance), on every GPU and every CPU.
//
// One thread per output pixel (all three channels); no shared memory, so the CPU shim can run it.

// float32 -> float16 bits, round to nearest even, as numpy's astype(float16) and __float2half_rn.
// In software (integer operations) so that NVRTC needs no cuda_fp16.h and the shim runs the same code.
__device__ __forceinline__ unsigned short f32_to_f16_bits(float f) {
  const unsigned int x = __float_as_uint(f);
  const unsigned int sign = (x >> 16) & 0x8000u;
  const unsigned int ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return (unsigned short)(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (ax >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // rounds to >= 65520: infinity
  if (ax < 0x38800000u) {                                           // below 2^-14: half subnormal
    if (ax <= 0x33000000u) return (unsigned short)sign;             // <= 2^-25 rounds (ties-to-even) to 0
    const unsigned int e = ax >> 23;
    const unsigned int m = (ax & 0x7fffffu) | 0x800000u;
    const unsigned int shift = 126u - e;                            // units of 2^-24
    unsigned int q = m >> shift;
    const unsigned int rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return (unsigned short)(sign | q);
  }
  unsigned int h = (ax - 0x38000000u) >> 13;
  const unsigned int rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return (unsigned short)(sign | h);
}

// OpenCV's vertical step of INTER_LINEAR_EXACT (vlineResize<uint8_t, ufixedpoint16, 2>): two rows of 8-bit
// fixed-point horizontal results, 8-bit weights, rounded once (16 fractional bits). At most
// (65280 * 256 + 2^15) >> 16 = 255: no clamp needed.
__device__ __forceinline__ int vertical_u8(int h0, int h1, int b0, int b1) { return (h0 * b0 + h1 * b1 + 32768) >> 16; }

// frames: all frames packed; frame b starts at frames + frame_offset[b], rows of geom pitch bytes.
// geom: int [B, 8] = h, w, pitch, new_h, new_w, pad_y, pad_x, 0.  taps: int [., 4] = (first source
// index, second source index, weight of the first, weight of the second) for frame b's resized
// columns at entries toff[b] .. toff[b] + new_w - 1, then its rows (pipeline.letterbox_plan computes
// them on the host, as cv::resize does). out: [B, 3, H, W], float32 (out_half = 0) or float16 bits.
// Grid: x over W, y over H, z over B.
extern "C" __global__ void letterbox_kernel(const unsigned char* __restrict__ frames,
                                            const long long* __restrict__ frame_offset,
                                            const int* __restrict__ geom, const int* __restrict__ taps,
                                            const int* __restrict__ toff, void* __restrict__ out, int out_half,
                                            int B, int H, int W, float pad, float alpha_r, float alpha_g,
                                            float alpha_b, float beta_r, float beta_g, float beta_b) {
  const int x = (int)(blockIdx.x * blockDim.x + threadIdx.x);
  const int y = (int)(blockIdx.y * blockDim.y + threadIdx.y);
  const int b = (int)blockIdx.z;
  if (x >= W || y >= H || b >= B) return;
  const int* g = geom + 8 * b;
  const int pitch = g[2], new_h = g[3], new_w = g[4], pad_y = g[5], pad_x = g[6];
  float rgb[3] = {pad, pad, pad};
  const int dx = x - pad_x, dy = y - pad_y;
  if (dx >= 0 && dx < new_w && dy >= 0 && dy < new_h) {
    const int* tx = taps + 4 * (toff[b] + dx);
    const int* ty = taps + 4 * (toff[b] + new_w + dy);
    const int x0 = 3 * tx[0], x1 = 3 * tx[1], a0 = tx[2], a1 = tx[3], b0 = ty[2], b1 = ty[3];
    const unsigned char* row0 = frames + frame_offset[b] + (long long)ty[0] * pitch;
    const unsigned char* row1 = frames + frame_offset[b] + (long long)ty[1] * pitch;
    for (int c = 0; c < 3; ++c) {  // c is the BGR channel; it lands in RGB plane 2 - c
      const int r0 = row0[x0 + c] * a0 + row0[x1 + c] * a1;
      const int r1 = row1[x0 + c] * a0 + row1[x1 + c] * a1;
      rgb[2 - c] = (float)vertical_u8(r0, r1, b0, b1);
    }
  }
  const float alpha[3] = {alpha_r, alpha_g, alpha_b}, beta[3] = {beta_r, beta_g, beta_b};
  const long long plane = (long long)H * W;
  const long long base = (long long)b * 3 * plane + (long long)y * W + x;
  for (int c = 0; c < 3; ++c) {
    const float v = fmaf(rgb[c], alpha[c], beta[c]);
    if (out_half) ((unsigned short*)out)[base + c * plane] = f32_to_f16_bits(v);
    else ((float*)out)[base + c * plane] = v;
  }
}

// NV12 (a camera's or decoder's frame: Y plane, then interleaved UV at half resolution) -> the same
// engine input, converting and letterboxing in one pass, so a live source needs no CPU conversion to BGR.
// Each of a pixel's four bilinear taps is first converted to BGR uint8 as df2infer.ops.nv12.nv12_to_bgr
// does (limited range, BT.601 or BT.709, 8-bit fixed point, the chroma sample of the tap's 2x2 block),
// then the taps are blended exactly as letterbox_kernel blends BGR pixels: the result equals
// to_input_batch(nv12_to_bgr(frame)) exactly.

// Fixed-point (x 256) Y'CbCr -> R'G'B' for limited-range video: rows R, G, B; columns Y, Cb, Cr.
__device__ __forceinline__ void nv12_to_bgr_pixel(int y, int u, int v, int matrix, int bgr[3]) {
  const int c = 298 * (y - 16), d = u - 128, e = v - 128;
  int r, g, b;
  if (matrix == 709) {
    r = (c + 459 * e + 128) >> 8;
    g = (c - 55 * d - 136 * e + 128) >> 8;
    b = (c + 541 * d + 128) >> 8;
  } else {  // BT.601
    r = (c + 409 * e + 128) >> 8;
    g = (c - 100 * d - 208 * e + 128) >> 8;
    b = (c + 516 * d + 128) >> 8;
  }
  bgr[0] = b < 0 ? 0 : (b > 255 ? 255 : b);
  bgr[1] = g < 0 ? 0 : (g > 255 ? 255 : g);
  bgr[2] = r < 0 ? 0 : (r > 255 ? 255 : r);
}

__device__ __forceinline__ void nv12_tap(const unsigned char* frame, int pitch, int uv_offset, int x, int y, int matrix,
                                         int bgr[3]) {
  const unsigned char* uv = frame + uv_offset + (long long)(y >> 1) * pitch + 2 * (x >> 1);
  nv12_to_bgr_pixel(frame[(long long)y * pitch + x], uv[0], uv[1], matrix, bgr);
}

// frames: frame b at frames + frame_offset[b]: h rows of the Y plane, `pitch` bytes apart, then at
// uv_offset ceil(h / 2) rows of interleaved U, V (same pitch). geom: int [B, 10] = h, w, pitch, new_h,
// new_w, pad_y, pad_x, uv_offset, matrix (601 or 709), 0. taps, toff, out and the rest as letterbox_kernel.
extern "C" __global__ void letterbox_nv12_kernel(const unsigned char* __restrict__ frames,
                                                 const long long* __restrict__ frame_offset,
                                                 const int* __restrict__ geom, const int* __restrict__ taps,
                                                 const int* __restrict__ toff, void* __restrict__ out, int out_half,
                                                 int B, int H, int W, float pad, float alpha_r, float alpha_g,
                                                 float alpha_b, float beta_r, float beta_g, float beta_b) {
  const int x = (int)(blockIdx.x * blockDim.x + threadIdx.x);
  const int y = (int)(blockIdx.y * blockDim.y + threadIdx.y);
  const int b = (int)blockIdx.z;
  if (x >= W || y >= H || b >= B) return;
  const int* g = geom + 10 * b;
  const int pitch = g[2], new_h = g[3], new_w = g[4], pad_y = g[5], pad_x = g[6], uv_offset = g[7], matrix = g[8];
  float rgb[3] = {pad, pad, pad};
  const int dx = x - pad_x, dy = y - pad_y;
  if (dx >= 0 && dx < new_w && dy >= 0 && dy < new_h) {
    const int* tx = taps + 4 * (toff[b] + dx);
    const int* ty = taps + 4 * (toff[b] + new_w + dy);
    const unsigned char* frame = frames + frame_offset[b];
    int p00[3], p01[3], p10[3], p11[3];
    nv12_tap(frame, pitch, uv_offset, tx[0], ty[0], matrix, p00);
    nv12_tap(frame, pitch, uv_offset, tx[1], ty[0], matrix, p01);
    nv12_tap(frame, pitch, uv_offset, tx[0], ty[1], matrix, p10);
    nv12_tap(frame, pitch, uv_offset, tx[1], ty[1], matrix, p11);
    for (int c = 0; c < 3; ++c) {  // c is the BGR channel; it lands in RGB plane 2 - c
      const int r0 = p00[c] * tx[2] + p01[c] * tx[3];
      const int r1 = p10[c] * tx[2] + p11[c] * tx[3];
      rgb[2 - c] = (float)vertical_u8(r0, r1, ty[2], ty[3]);
    }
  }
  const float alpha[3] = {alpha_r, alpha_g, alpha_b}, beta[3] = {beta_r, beta_g, beta_b};
  const long long plane = (long long)H * W;
  const long long base = (long long)b * 3 * plane + (long long)y * W + x;
  for (int c = 0; c < 3; ++c) {
    const float v = fmaf(rgb[c], alpha[c], beta[c]);
    if (out_half) ((unsigned short*)out)[base + c * plane] = f32_to_f16_bits(v);
    else ((float*)out)[base + c * plane] = v;
  }
}
