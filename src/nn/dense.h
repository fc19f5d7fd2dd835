// Shared by Linear and the convolution whose kernel covers its input (a dense layer on x[n][K]).
#pragma once

namespace lowbit {

// Rows [o0, o1) of the parameter gradients of y[N, O] = x[N, I] * W^T + b over all N samples:
// dW[o0:o1, I] (+)= dy[N, o0:o1]^T * x[N, I] and db[o0:o1] (+)= the sums of dy's columns (db may be
// null), added (accumulate) or replacing. Each element's sum runs over the samples in order, so
// the result does not depend on how the rows are split.
void dense_grads_by_rows(const float* x, const float* dy, int n, int in, int out, int o0, int o1, float* dw, float* db,
                         bool accumulate);

}  // namespace lowbit
