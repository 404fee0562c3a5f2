// Landmark decoding on the GPU: one thread per (detection, landmark), only the category's own
// landmarks (j < counts[label]); both methods of df2infer.ops.landmarks.decode_landmarks.
//
// heatmaps: the engine's heatmap tensor; detection d's [C, Kh, Kw] maps start at
// heatmaps[heat_index[d] * C * Kh * Kw]. boxes: float [n, 4] image pixels (unclipped); labels: int
// [n] category ids; counts: int [14] landmarks per category id. out: float [n, C, 3] = x, y, score;
// entries with j >= counts[label] are left untouched. No shared memory, so the CPU shim can run it.

#define MAX_HEATMAP_SIZE 64  // the torchvision method keeps one heatmap column per thread

// numpy's argmax: the first maximum in row-major order (logits are finite).
__device__ __forceinline__ int argmax_first(const float* __restrict__ v, int count) {
  int best = 0;
  float bv = v[0];
  for (int i = 1; i < count; ++i)
    if (v[i] > bv) { bv = v[i]; best = i; }
  return best;
}

// One axis of the quadratic refinement: -d1 / d2 where the parabola through (minus, score, plus)
// opens downward and the argmax is interior, clipped to [-0.5, 0.5] (ops/landmarks.py _heatmaps_subpixel).
__device__ __forceinline__ float refine(float minus, float score, float plus, bool inside) {
  const float d1 = 0.5f * (plus - minus);
  const float d2 = (plus - 2.0f * score) + minus;
  const float off = (d2 < 0.f && inside) ? -d1 / d2 : 0.f;
  return fminf(fmaxf(off, -0.5f), 0.5f);
}

// method="subpixel": argmax on the Kh x Kw map, quadratic refinement, x = x1 + (px + 0.5) * bw / Kw
// with bw = max(x2 - x1, 1), the mapping in double precision as numpy computes it.
extern "C" __global__ void landmarks_subpixel(const float* __restrict__ heatmaps, const long long* __restrict__ heat_index,
                                              const float* __restrict__ boxes, const int* __restrict__ labels,
                                              const int* __restrict__ counts, int n, int C, int Kh, int Kw,
                                              float* __restrict__ out) {
  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (long long)n * C) return;
  const int d = (int)(t / C), j = (int)(t % C);
  if (j >= counts[labels[d]]) return;
  const float* map = heatmaps + (heat_index[d] * C + j) * (long long)(Kh * Kw);
  const int pos = argmax_first(map, Kh * Kw);
  const int yi = pos / Kw, xi = pos % Kw;
  const float score = map[pos];
  const float dx = refine(map[yi * Kw + (xi > 0 ? xi - 1 : 0)], score, map[yi * Kw + (xi < Kw - 1 ? xi + 1 : xi)],
                          xi > 0 && xi < Kw - 1);
  const float dy = refine(map[(yi > 0 ? yi - 1 : 0) * Kw + xi], score, map[(yi < Kh - 1 ? yi + 1 : yi) * Kw + xi],
                          yi > 0 && yi < Kh - 1);
  const float* box = boxes + 4 * d;
  const float bw = fmaxf(box[2] - box[0], 1.f), bh = fmaxf(box[3] - box[1], 1.f);
  float* o = out + 3 * t;
  o[0] = (float)((double)box[0] + ((double)xi + (double)dx + 0.5) * (double)bw / (double)Kw);
  o[1] = (float)((double)box[1] + ((double)yi + (double)dy + 0.5) * (double)bh / (double)Kh);
  o[2] = score;
}

// OpenCV's bicubic coefficients (interpolateCubic, A = -0.75) for fractional position x.
__device__ __forceinline__ void cubic_coeffs(float x, float* c) {
  const float A = -0.75f;
  c[0] = ((A * (x + 1.f) - 5.f * A) * (x + 1.f) + 8.f * A) * (x + 1.f) - 4.f * A;
  c[1] = ((A + 2.f) * x - (A + 3.f)) * x * x + 1.f;
  c[2] = ((A + 2.f) * (1.f - x) - (A + 3.f)) * (1.f - x) * (1.f - x) + 1.f;
  c[3] = 1.f - c[0] - c[1] - c[2];
}

// Per-axis cubic tables for the torchvision method: for detection d, output coordinates 0..mw-1
// (x) then 0..mh-1 (y) at tables[table_offset[d] + i] = (first source index as float, c0..c3), with
// OpenCV's resize geometry: scale = 1 / (dst / src), f = (float)((i + 0.5) * scale - 0.5),
// s = floor(f), coefficients of f - s; taps s - 1 .. s + 2 are clamped to the map when read.
// sizes: int [n, 2] = mw, mh (ceil of the box size, at least 1). Grid: 1-D over table_offset[n].
extern "C" __global__ void landmarks_cubic_tables(const int* __restrict__ sizes, const long long* __restrict__ table_offset,
                                                  int n, int Kh, int Kw, float* __restrict__ tables) {
  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (n <= 0 || t >= table_offset[n]) return;
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (table_offset[mid] <= t) lo = mid; else hi = mid - 1;
  }
  const int d = lo, mw = sizes[2 * d];
  int i = (int)(t - table_offset[d]);
  int dst, src;
  if (i < mw) { dst = mw; src = Kw; } else { i -= mw; dst = sizes[2 * d + 1]; src = Kh; }
  const double scale = 1.0 / ((double)dst / (double)src);
  float f = (float)((i + 0.5) * scale - 0.5);
  const float s = floorf(f);
  f -= s;
  float* o = tables + 5 * t;
  o[0] = s;
  cubic_coeffs(f, o + 1);
}

// method="torchvision": the map resized bicubically (OpenCV INTER_CUBIC on float32: horizontal pass,
// then vertical, replicated border) to mw x mh, its first maximum in row-major order, x = x1 + (xi +
// 0.5) * w / mw with w = max(x2 - x1, 1) in double precision, score = the resized value there.
// Two steps so that the GPU has enough threads: one thread per (detection, landmark, output column)
// finds the column's maximum (landmarks_torchvision_columns), then one per (detection, landmark)
// takes the best column (landmarks_torchvision).

// Column maxima: for detection d with k = counts[labels[d]] landmarks, its k * mw columns are entries
// col_offset[d] + j * mw + xo of col_best (the value) and col_row (the first row holding it).
// Grid: 1-D over col_offset[n].
extern "C" __global__ void landmarks_torchvision_columns(const float* __restrict__ heatmaps,
                                                         const long long* __restrict__ heat_index,
                                                         const int* __restrict__ sizes,
                                                         const long long* __restrict__ table_offset,
                                                         const float* __restrict__ tables,
                                                         const long long* __restrict__ col_offset, int n, int C,
                                                         int Kh, int Kw, float* __restrict__ col_best,
                                                         int* __restrict__ col_row) {
  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (n <= 0 || t >= col_offset[n] || Kh > MAX_HEATMAP_SIZE) return;
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (col_offset[mid] <= t) lo = mid; else hi = mid - 1;
  }
  const int d = lo, mw = sizes[2 * d], mh = sizes[2 * d + 1];
  const long long local = t - col_offset[d];
  const int j = (int)(local / mw), xo = (int)(local % mw);
  const float* map = heatmaps + (heat_index[d] * C + j) * (long long)(Kh * Kw);
  const float* xt = tables + 5 * table_offset[d];
  const float* yt = xt + 5 * mw;
  const int s = (int)xt[5 * xo];
  int xs[4];
  for (int k = 0; k < 4; ++k) {
    const int v = s - 1 + k;
    xs[k] = v < 0 ? 0 : (v >= Kw ? Kw - 1 : v);
  }
  const float* a = xt + 5 * xo + 1;
  float column[MAX_HEATMAP_SIZE];  // the horizontal pass at this column, one value per map row
  for (int r = 0; r < Kh; ++r) {
    const float* row = map + r * Kw;
    column[r] = row[xs[0]] * a[0] + row[xs[1]] * a[1] + row[xs[2]] * a[2] + row[xs[3]] * a[3];
  }
  float best = 0.f;
  int best_row = -1;
  for (int yo = 0; yo < mh; ++yo) {
    const int sy = (int)yt[5 * yo];
    const float* b = yt + 5 * yo + 1;
    int ys[4];
    for (int k = 0; k < 4; ++k) {
      const int v = sy - 1 + k;
      ys[k] = v < 0 ? 0 : (v >= Kh ? Kh - 1 : v);
    }
    const float v = column[ys[0]] * b[0] + column[ys[1]] * b[1] + column[ys[2]] * b[2] + column[ys[3]] * b[3];
    if (best_row < 0 || v > best) { best = v; best_row = yo; }
  }
  col_best[t] = best;
  col_row[t] = best_row;
}

// The best column of each (detection, landmark): the first maximum in row-major order of the resized
// map, i.e. the highest value, ties to the lowest row, then to the lowest column. Grid: 1-D over n * C.
extern "C" __global__ void landmarks_torchvision(const float* __restrict__ boxes, const int* __restrict__ labels,
                                                 const int* __restrict__ counts, const int* __restrict__ sizes,
                                                 const long long* __restrict__ col_offset,
                                                 const float* __restrict__ col_best, const int* __restrict__ col_row,
                                                 int n, int C, float* __restrict__ out) {
  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (long long)n * C) return;
  const int d = (int)(t / C), j = (int)(t % C);
  if (j >= counts[labels[d]]) return;
  const int mw = sizes[2 * d], mh = sizes[2 * d + 1];
  const long long base = col_offset[d] + (long long)j * mw;
  float best = col_best[base];
  int bx = 0, by = col_row[base];
  for (int xo = 1; xo < mw; ++xo) {
    const float v = col_best[base + xo];
    const int r = col_row[base + xo];
    if (v > best || (v == best && r < by)) { best = v; bx = xo; by = r; }
  }
  const float* box = boxes + 4 * d;
  const double w = fmax((double)(box[2] - box[0]), 1.0), h = fmax((double)(box[3] - box[1]), 1.0);
  float* o = out + 3 * t;
  o[0] = (float)(((double)bx + 0.5) * (w / (double)mw) + (double)box[0]);
  o[1] = (float)(((double)by + 0.5) * (h / (double)mh) + (double)box[1]);
  o[2] = best;
}
