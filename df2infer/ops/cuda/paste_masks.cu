// Mask pasting on the GPU: every detection of every image of a batch in one launch, with exactly the
// semantics of df2infer.ops.masks.paste_masks (detectron2's paste_masks_in_image: grid_sample,
// bilinear, align_corners=False, zeros outside the M x M map, pixel sampled at its centre, on when
// the sample >= threshold), written only inside each box's integer extent (mask_extent).
//
// Bit-exactness: the sample positions are computed in double precision and rounded to float, the
// weights as max(0, 1 - |u - j|) in float, and the value as the reference's two matrix products
// (first along y, then along x), each a two-term dot product accumulated the way a BLAS kernel does,
// acc = fma(w1, v1, w0 * v0). Compile with --fmad=false so that no other product is fused.
//
// One thread per output pixel; no shared memory, so the CPU shim can run it.

// Sample position of pixel `p` (its centre p + 0.5) in the cell coordinates of a length-m map
// spanning [lo, hi]: float64 arithmetic, then float32, as ops/masks.py _sample_positions.
__device__ __forceinline__ float sample_position(int p, float lo, float hi, int m) {
  double extent = (double)hi - (double)lo;
  if (extent < 1e-6) extent = 1e-6;
  return (float)(((double)p + 0.5 - (double)lo) * ((double)m / extent) - 0.5);
}

// The (at most) two bilinear taps of position u over cells 0..m-1: indices and weights; a tap outside
// the map gets weight 0 and index 0 (it reads a valid cell, times zero).
__device__ __forceinline__ void bilinear_taps(float u, int m, int* j0, int* j1, float* w0, float* w1) {
  const float f = floorf(u);
  const int i = (int)f;
  const float a = 1.f - (u - f);          // weight of cell i:     1 - |u - i|
  const float b = 1.f - ((f + 1.f) - u);  // weight of cell i + 1: 1 - |u - (i + 1)|
  const bool in0 = i >= 0 && i < m, in1 = i + 1 >= 0 && i + 1 < m;
  *j0 = in0 ? i : 0;
  *j1 = in1 ? i + 1 : 0;
  *w0 = in0 ? fmaxf(a, 0.f) : 0.f;
  *w1 = in1 ? fmaxf(b, 0.f) : 0.f;
}

// Detection d whose range [offsets[d], offsets[d + 1]) holds flat index t (offsets ascending).
__device__ __forceinline__ int owner(const long long* __restrict__ offsets, int n, long long t) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (offsets[mid] <= t) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// The sampling weights of every row and column of every detection's extent, computed once (in double
// precision, so per pixel there is no double arithmetic): detection d's entries start at woff[d], its
// extent's rows first (y1 - y0 of them, sampling the map's rows), then its columns. Entry i holds the
// taps taps[2i], taps[2i + 1] and weights weights[2i], weights[2i + 1]. Grid: 1-D over woff[n].
extern "C" __global__ void paste_masks_weights(const float* __restrict__ boxes, const int* __restrict__ extents,
                                               const long long* __restrict__ woff, int n, int mh, int mw,
                                               int* __restrict__ taps, float* __restrict__ weights) {
  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (n <= 0 || t >= woff[n]) return;
  const int d = owner(woff, n, t);
  const int* e = extents + 4 * d;
  const float* box = boxes + 4 * d;
  const int i = (int)(t - woff[d]), rows = e[3] - e[1];
  float u;
  int m;
  if (i < rows) { u = sample_position(e[1] + i, box[1], box[3], mh); m = mh; }
  else { u = sample_position(e[0] + i - rows, box[0], box[2], mw); m = mw; }
  bilinear_taps(u, m, taps + 2 * t, taps + 2 * t + 1, weights + 2 * t, weights + 2 * t + 1);
}

// The probability at (row entry ry, column entry cx) of one detection's M x M map: the reference's
// (Ry @ mask) at the two tap columns, then (.. @ Rx^T).
__device__ __forceinline__ float paste_value(const float* __restrict__ map, int mw, const int* __restrict__ taps,
                                             const float* __restrict__ weights, long long ry, long long cx) {
  const int r0 = taps[2 * ry], r1 = taps[2 * ry + 1], c0 = taps[2 * cx], c1 = taps[2 * cx + 1];
  const float wy0 = weights[2 * ry], wy1 = weights[2 * ry + 1], wx0 = weights[2 * cx], wx1 = weights[2 * cx + 1];
  const float t0 = fmaf(wy1, map[r1 * mw + c0], wy0 * map[r0 * mw + c0]);
  const float t1 = fmaf(wy1, map[r1 * mw + c1], wy0 * map[r0 * mw + c1]);
  return fmaf(wx1, t1, wx0 * t0);
}

// Compact masks: detection d's mask covers extents[d] = [x0, y0, x1, y1) and is stored row-major at
// out[offsets[d] .. offsets[d + 1]), one byte per pixel (0/1). masks: the engine's mask tensor;
// detection d's M x M map is masks[mask_index[d] * mh * mw ...]. taps/weights/woff: paste_masks_weights.
// Grid: 1-D over offsets[n] pixels.
extern "C" __global__ void paste_masks_compact(const float* __restrict__ masks, const long long* __restrict__ mask_index,
                                               const int* __restrict__ extents, const long long* __restrict__ offsets,
                                               const long long* __restrict__ woff, const int* __restrict__ taps,
                                               const float* __restrict__ weights, int n, int mh, int mw,
                                               float threshold, unsigned char* __restrict__ out) {
  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (n <= 0 || t >= offsets[n]) return;
  const int d = owner(offsets, n, t);
  const int* e = extents + 4 * d;
  const int w = e[2] - e[0], rows = e[3] - e[1];
  const int local = (int)(t - offsets[d]);  // < 2^31: one mask's pixels
  const int r = local / w, c = local - r * w;
  const float* map = masks + mask_index[d] * (long long)(mh * mw);
  out[t] = paste_value(map, mw, taps, weights, woff[d] + r, woff[d] + rows + c) >= threshold ? 1 : 0;
}

// Full-image instance maps: image b (size dims[2b] x dims[2b + 1]) owns detections
// [det_begin[b], det_begin[b + 1]) and its map is out[map_offsets[b] ...], row-major, int16: 0 where
// no mask is on, else 1 + the lowest index (within the image) of a detection whose mask is on there
// (detections come sorted by descending score, so the most confident wins an overlap).
// Grid: 1-D over map_offsets[B] pixels.
extern "C" __global__ void paste_masks_instance_map(const float* __restrict__ masks,
                                                    const long long* __restrict__ mask_index,
                                                    const int* __restrict__ extents, const long long* __restrict__ woff,
                                                    const int* __restrict__ taps, const float* __restrict__ weights,
                                                    const int* __restrict__ det_begin, const int* __restrict__ dims,
                                                    const long long* __restrict__ map_offsets, int B, int mh, int mw,
                                                    float threshold, short* __restrict__ out) {
  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (B <= 0 || t >= map_offsets[B]) return;
  const int b = owner(map_offsets, B, t);
  const int w = dims[2 * b + 1];
  const int local = (int)(t - map_offsets[b]);  // < 2^31: one image's pixels
  const int y = local / w, x = local - y * w;
  short label = 0;
  for (int d = det_begin[b]; d < det_begin[b + 1]; ++d) {
    const int* e = extents + 4 * d;
    if (x < e[0] || x >= e[2] || y < e[1] || y >= e[3]) continue;
    const float* map = masks + mask_index[d] * (long long)(mh * mw);
    if (paste_value(map, mw, taps, weights, woff[d] + (y - e[1]), woff[d] + (e[3] - e[1]) + (x - e[0])) >= threshold) {
      label = (short)(d - det_begin[b] + 1);
      break;
    }
  }
  out[t] = label;
}
