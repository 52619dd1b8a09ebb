/* K-LMS (linear multistep on the sigma ODE, order 4) as diffusers' LMSDiscreteScheduler runs it with
 * 'linspace' spacing, float32 with diffusers' schedule; the coefficients by Gauss-Kronrod quadrature. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sample/sampler.h"
#include "sample/schedule.h"

#define LMS_ORDER 4

/* diffusers' lms_derivative: the float32 torch arithmetic of the integrand, tau rounded to float32. */
static double lms_integrand(const float *sigmas, int order, int t, int current_order, double tau) {
  if (order == 1) return 1.0; /* the product loop is empty: python's 1.0 */
  const float tau_f = (float)tau;
  float prod = 1.0f;
  for (int k = 0; k < order; k++) {
    if (k == current_order) continue;
    prod *= (tau_f - sigmas[t - k]) / (sigmas[t - current_order] - sigmas[t - k]);
  }
  return (double)prod;
}

/* QUADPACK's 21-point Gauss-Kronrod abscissae and weights on [-1, 1] (positive half; index 10 is 0). */
static const double gk21_x[11] = {
    0.995657163025808080735527280689003, 0.973906528517171720077964012084452, 0.930157491355708226001207180059508,
    0.865063366688984510732096688423493, 0.780817726586416897063717578345042, 0.679409568299024406234327365114874,
    0.562757134668604683339000099272694, 0.433395394129247190799265943165784, 0.294392862701460198131126603103866,
    0.148874338981631210884826001129720, 0.0};
static const double gk21_w[11] = {
    0.011694638867371874278064396062192, 0.032558162307964727478818972459390, 0.054755896574351996031381300244580,
    0.075039674810919952767043140916190, 0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
    0.123491976262065851077958109831074, 0.134709217311473325928054001771707, 0.142775938577060080797094273138717,
    0.147739104901338491374841515972068, 0.149445554002916905664936468389821};

/* scipy.integrate.quad (QUADPACK qagse) stops after its first 21-point rule here: the integrand is a
 * polynomial of degree <= 3, so the Kronrod-Gauss error estimate is at rounding level, far below
 * epsrel 1e-4. The sums run in qk21's order (Gauss nodes, then the Kronrod extension). */
double sd_lms_coefficient(const float *sigmas, int order, int t, int current_order) {
  const double a = sigmas[t], b = sigmas[t + 1];
  const double centre = 0.5 * (a + b), half_length = 0.5 * (b - a);
  double result = gk21_w[10] * lms_integrand(sigmas, order, t, current_order, centre);
  for (int j = 1; j <= 5; j++) {
    int node = 2 * j - 1; /* Fortran xgk(2j), 0-based */
    double abscissa = half_length * gk21_x[node];
    double sum = lms_integrand(sigmas, order, t, current_order, centre - abscissa) +
                 lms_integrand(sigmas, order, t, current_order, centre + abscissa);
    result += gk21_w[node] * sum;
  }
  for (int j = 1; j <= 5; j++) {
    int node = 2 * j - 2; /* Fortran xgk(2j-1) */
    double abscissa = half_length * gk21_x[node];
    double sum = lms_integrand(sigmas, order, t, current_order, centre - abscissa) +
                 lms_integrand(sigmas, order, t, current_order, centre + abscissa);
    result += gk21_w[node] * sum;
  }
  return result * half_length;
}

int sd_sample_lms(const sd_sampler_config *cfg, float *latent, int64_t numel, sd_denoise_fn fn, void *ctx,
                  sd_torch_rng *rng, sd_progress_fn progress, sd_error *err) {
  (void)rng;
  const int steps = cfg->steps;
  float timesteps[SD_TRAIN_TIMESTEPS], sigmas[SD_TRAIN_TIMESTEPS + 1];
  if (sd_schedule_linspace_sigmas(steps, timesteps, sigmas, err)) return -1;

  float *buf = sd_malloc((size_t)numel * (LMS_ORDER + 2) * sizeof *buf, err);
  if (!buf) return -1;
  float *derivatives[LMS_ORDER]; /* newest at derivatives[n_derivatives - 1] */
  for (int k = 0; k < LMS_ORDER; k++) derivatives[k] = buf + k * numel;
  float *scaled = buf + LMS_ORDER * numel, *eps = buf + (LMS_ORDER + 1) * numel;
  int n_derivatives = 0, rc = 0;

  /* init_noise_sigma = sigmas.max() ('linspace' spacing) */
  float init_noise_sigma = 0.0f;
  for (int i = 0; i <= steps; i++) init_noise_sigma = fmaxf(init_noise_sigma, sigmas[i]);
  for (int64_t k = 0; k < numel; k++) latent[k] = latent[k] * init_noise_sigma;

  for (int i = 0; i < steps; i++) {
    const float sigma = sigmas[i];
    const float input_scale = sqrtf(sigma * sigma + 1.0f);
    for (int64_t k = 0; k < numel; k++) scaled[k] = latent[k] / input_scale;
    if (fn(ctx, scaled, timesteps[i], eps, err)) {
      sd_fail_prefix(err, "lms step %d/%d (t=%g)", i + 1, steps, (double)timesteps[i]);
      rc = -1;
      break;
    }
    if (n_derivatives == LMS_ORDER) { /* derivatives.pop(0) */
      float *oldest = derivatives[0];
      memmove(derivatives, derivatives + 1, (LMS_ORDER - 1) * sizeof derivatives[0]);
      derivatives[LMS_ORDER - 1] = oldest;
      n_derivatives--;
    }
    float *derivative = derivatives[n_derivatives++];
    for (int64_t k = 0; k < numel; k++) {
      float pred_original = latent[k] - sigma * eps[k];
      derivative[k] = (latent[k] - pred_original) / sigma;
    }
    const int order = i + 1 < LMS_ORDER ? i + 1 : LMS_ORDER;
    float coeffs[LMS_ORDER]; /* python floats multiplying float32 tensors: rounded to float32 */
    for (int c = 0; c < order; c++) coeffs[c] = (float)sd_lms_coefficient(sigmas, order, i, c);
    for (int64_t k = 0; k < numel; k++) {
      /* sum(coeff * derivative for ... zip(coeffs, reversed(derivatives))), left to right */
      float sum = coeffs[0] * derivatives[n_derivatives - 1][k];
      for (int c = 1; c < order; c++) sum = sum + coeffs[c] * derivatives[n_derivatives - 1 - c][k];
      latent[k] = latent[k] + sum;
    }
    if (progress) progress(ctx, i + 1, steps);
  }
  free(buf);
  return rc;
}
