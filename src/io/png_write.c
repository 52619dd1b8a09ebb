/* PNG writer (libpng) for sdprune's generated images and the A1111 infotext that goes in them.
 * The pixel conversion copies diffusers' numpy_to_pil bit for bit; nothing here resizes or reads images. */
#include "io/png_write.h"

#include "core/utf8.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SDPRUNE_VERSION
#define SDPRUNE_VERSION "unknown"
#endif

void sd_image_to_rgb8(const float *chw, int H, int W, uint8_t *hwc) {
  long plane = (long)H * W;
  for (int c = 0; c < 3; c++)
    for (long i = 0; i < plane; i++) {
      /* float32 throughout, like torch/numpy: x * 0.5 is exact, so this equals (x + 1) / 2 rounded once. */
      float v = chw[c * plane + i] * 0.5f + 0.5f;
      v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
      float scaled = v * 255.0f;
      /* numpy round() is round-half-to-even; nearbyintf does that in the default rounding mode. */
      hwc[i * 3 + c] = isnan(scaled) ? 0 : (uint8_t)nearbyintf(scaled);
    }
}

/* ---- text chunks ---------------------------------------------------------------------------------------- */

/* Decodes UTF-8 to Latin-1 if every code point is < 256; returns 1 (out filled), 0 (needs iTXt), -1 (bad). */
static int utf8_to_latin1(const char *s, char *out) {
  const unsigned char *p = (const unsigned char *)s;
  int latin1 = 1;
  size_t o = 0;
  while (*p) {
    unsigned cp;
    int n = sd_utf8_next(p, &cp);
    if (n < 0) return -1;
    if (cp > 0xFF) latin1 = 0;
    if (latin1) out[o++] = (char)cp;
    p += n;
  }
  out[o] = '\0';
  return latin1;
}

static int check_keyword(const char *key) {
  size_t n = strlen(key);
  if (n < 1 || n > 79 || key[0] == ' ' || key[n - 1] == ' ') return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)key[i];
    if (ch < 0x20 || (ch > 0x7E && ch < 0xA1)) return -1;
  }
  return 0;
}

/* ---- libpng plumbing ------------------------------------------------------------------------------------- */

typedef struct {
  jmp_buf jump;
  char msg[256];
} png_failure;

static void on_png_error(png_structp png, png_const_charp msg) {
  png_failure *failure = png_get_error_ptr(png);
  snprintf(failure->msg, sizeof failure->msg, "%s", msg);
  longjmp(failure->jump, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;
}

/* Encodes the image into f; returns 0 or -1 with err set. Kept apart so the setjmp frame holds no locals that
 * change after setjmp. */
static int encode_png(FILE *f, const uint8_t *hwc, int H, int W, png_text *chunks, int n_chunks, sd_error *err) {
  png_failure failure = {.msg = ""};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &failure, on_png_error, on_png_warning);
  if (!png) return sd_fail(err, "libpng: cannot create write struct");
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, NULL);
    return sd_fail(err, "libpng: cannot create info struct");
  }
  if (setjmp(failure.jump)) {
    int write_errno = ferror(f) ? errno : 0; /* libpng's "Write Error" drops the cause (disk full, EFBIG) */
    png_destroy_write_struct(&png, &info);
    if (write_errno) return sd_fail(err, "write failed: %s (libpng: %s)", strerror(write_errno), failure.msg);
    return sd_fail(err, "libpng: %s", failure.msg);
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (n_chunks > 0) png_set_text(png, info, chunks, n_chunks);
  png_write_info(png, info);
  for (int y = 0; y < H; y++) png_write_row(png, hwc + (size_t)y * W * 3);
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return 0;
}

int sd_png_write_rgb8(const char *path, const uint8_t *hwc, int H, int W, const sd_png_text *texts, int n_texts,
                      sd_error *err) {
  if (H <= 0 || W <= 0 || H > 65536 || W > 65536) return sd_fail(err, "%s: bad image size %dx%d", path, W, H);
  png_text *chunks = sd_calloc((size_t)(n_texts > 0 ? n_texts : 1), sizeof *chunks, err);
  char **latin1 = sd_calloc((size_t)(n_texts > 0 ? n_texts : 1), sizeof *latin1, err);
  char *tmp = NULL;
  FILE *f = NULL;
  int rc = -1;
  if (!chunks || !latin1) goto free_chunks;
  for (int i = 0; i < n_texts; i++) {
    if (!texts[i].key || !texts[i].text || check_keyword(texts[i].key)) {
      sd_fail(err, "%s: invalid PNG text keyword \"%s\"", path, texts[i].key ? texts[i].key : "(null)");
      goto free_chunks;
    }
    latin1[i] = sd_malloc(strlen(texts[i].text) + 1, err);
    if (!latin1[i]) goto free_chunks;
    int kind = utf8_to_latin1(texts[i].text, latin1[i]);
    if (kind < 0) {
      sd_fail(err, "%s: text chunk \"%s\" is not valid UTF-8", path, texts[i].key);
      goto free_chunks;
    }
    chunks[i].key = (char *)texts[i].key;
    if (kind == 1) { /* Latin-1 encodable: tEXt, like PIL's PngInfo.add_text */
      chunks[i].compression = PNG_TEXT_COMPRESSION_NONE;
      chunks[i].text = latin1[i];
      chunks[i].text_length = strlen(latin1[i]);
    } else {
      chunks[i].compression = PNG_ITXT_COMPRESSION_NONE;
      chunks[i].text = (char *)texts[i].text;
      chunks[i].itxt_length = strlen(texts[i].text);
      chunks[i].lang = "";
      chunks[i].lang_key = "";
    }
  }

  size_t tmp_len = strlen(path) + 32;
  tmp = sd_malloc(tmp_len, err);
  if (!tmp) goto free_chunks;
  snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());
  f = fopen(tmp, "wb");
  if (!f) {
    sd_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
    goto free_chunks;
  }
  if (encode_png(f, hwc, H, W, chunks, n_texts, err)) {
    sd_fail_prefix(err, "%s", path);
    goto remove_tmp;
  }
  if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0) {
    sd_fail(err, "%s: write failed: %s", tmp, strerror(errno));
    goto remove_tmp;
  }
  int close_rc = fclose(f);
  f = NULL;
  if (close_rc != 0) {
    sd_fail(err, "%s: close failed: %s", tmp, strerror(errno));
    goto remove_tmp;
  }
  if (rename(tmp, path) != 0) {
    sd_fail(err, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    goto remove_tmp;
  }
  rc = 0;
  goto free_chunks;

remove_tmp:
  if (f) fclose(f);
  unlink(tmp);
free_chunks:
  free(tmp);
  if (latin1)
    for (int i = 0; i < n_texts; i++) free(latin1[i]);
  free(latin1);
  free(chunks);
  return rc;
}

int sd_png_write_rgb(const char *path, const float *chw, int H, int W, const sd_png_text *texts, int n_texts,
                     sd_error *err) {
  if (H <= 0 || W <= 0 || H > 65536 || W > 65536) return sd_fail(err, "%s: bad image size %dx%d", path, W, H);
  uint8_t *hwc = sd_malloc((size_t)H * W * 3, err);
  if (!hwc) return sd_fail_prefix(err, "%s", path);
  sd_image_to_rgb8(chw, H, W, hwc);
  int rc = sd_png_write_rgb8(path, hwc, H, W, texts, n_texts, err);
  free(hwc);
  return rc;
}

/* ---- A1111 infotext -------------------------------------------------------------------------------------- */

typedef struct {
  char *data;
  size_t len, cap;
  int oom;
} strbuf;

static void sb_add(strbuf *sb, const char *s, size_t n) {
  if (sb->oom) return;
  if (sb->len + n + 1 > sb->cap) {
    size_t cap = sb->cap ? sb->cap : 256;
    while (cap < sb->len + n + 1) cap *= 2;
    char *grown = realloc(sb->data, cap);
    if (!grown) {
      sb->oom = 1;
      return;
    }
    sb->data = grown;
    sb->cap = cap;
  }
  memcpy(sb->data + sb->len, s, n);
  sb->len += n;
  sb->data[sb->len] = '\0';
}

static void sb_puts(strbuf *sb, const char *s) { sb_add(sb, s, strlen(s)); }

char *sd_a1111_quote(const char *value) {
  if (!strpbrk(value, ",\n:")) return sd_strdup(value);
  strbuf sb = {0};
  sb_puts(&sb, "\"");
  for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
    char esc[8];
    switch (*p) { /* json.dumps(ensure_ascii=False): only '"', '\\' and control characters are escaped */
    case '"': sb_puts(&sb, "\\\""); break;
    case '\\': sb_puts(&sb, "\\\\"); break;
    case '\n': sb_puts(&sb, "\\n"); break;
    case '\r': sb_puts(&sb, "\\r"); break;
    case '\t': sb_puts(&sb, "\\t"); break;
    case '\b': sb_puts(&sb, "\\b"); break;
    case '\f': sb_puts(&sb, "\\f"); break;
    default:
      if (*p < 0x20) {
        snprintf(esc, sizeof esc, "\\u%04x", *p);
        sb_puts(&sb, esc);
      } else {
        sb_add(&sb, (const char *)p, 1);
      }
    }
  }
  sb_puts(&sb, "\"");
  if (sb.oom) {
    free(sb.data);
    return NULL;
  }
  return sb.data;
}

/* Python's repr(float): the shortest digits that round-trip, fixed notation for exponents -4..15
 * ("7.0", "7.5", "0.0001"), else scientific ("1e-05", "1e+16"). */
static void python_float_repr(double v, char *out, size_t size) {
  if (isnan(v)) {
    snprintf(out, size, "nan");
    return;
  }
  if (isinf(v)) {
    snprintf(out, size, v < 0 ? "-inf" : "inf");
    return;
  }
  char sci[40];
  for (int precision = 1; precision <= 17; precision++) {
    snprintf(sci, sizeof sci, "%.*e", precision - 1, v);
    if (strtod(sci, NULL) == v) break;
  }
  char digits[24];
  int nd = 0, neg = sci[0] == '-';
  const char *p = sci + neg;
  for (; *p && *p != 'e'; p++)
    if (*p >= '0' && *p <= '9') digits[nd++] = *p;
  int exp10 = atoi(p + 1);
  while (nd > 1 && digits[nd - 1] == '0') nd--;
  digits[nd] = '\0';
  char body[64];
  if (exp10 >= -4 && exp10 < 16) {
    size_t o = 0;
    if (exp10 < 0) {
      o += (size_t)snprintf(body, sizeof body, "0.");
      for (int i = 0; i < -exp10 - 1; i++) body[o++] = '0';
      for (int i = 0; i < nd; i++) body[o++] = digits[i];
    } else {
      for (int i = 0; i <= exp10; i++) body[o++] = i < nd ? digits[i] : '0';
      body[o++] = '.';
      if (nd > exp10 + 1)
        for (int i = exp10 + 1; i < nd; i++) body[o++] = digits[i];
      else
        body[o++] = '0';
    }
    body[o] = '\0';
  } else {
    snprintf(body, sizeof body, "%c%s%se%c%02d", digits[0], nd > 1 ? "." : "", digits + 1, exp10 < 0 ? '-' : '+',
             exp10 < 0 ? -exp10 : exp10);
  }
  snprintf(out, size, "%s%.48s", neg ? "-" : "", body);
}

static void add_param(strbuf *sb, int *first, const char *key, const char *value) {
  if (!value || !*value) return;
  char *quoted = sd_a1111_quote(value);
  if (!quoted) {
    sb->oom = 1;
    return;
  }
  if (!*first) sb_puts(sb, ", ");
  *first = 0;
  sb_puts(sb, key);
  sb_puts(sb, ": ");
  sb_puts(sb, quoted);
  free(quoted);
}

static int is_py_space(unsigned char ch) {
  return ch == ' ' || (ch >= 0x09 && ch <= 0x0D) || (ch >= 0x1C && ch <= 0x1F);
}

char *sd_a1111_parameters(const char *prompt, const char *negative, int steps, const char *sampler_name,
                          double cfg_scale, uint64_t seed, int width, int height, const char *model_hash,
                          const char *model_name, const char *extra) {
  strbuf sb = {0};
  char num[64];
  int first = 1;
  sb_puts(&sb, prompt ? prompt : "");
  if (negative && *negative) {
    sb_puts(&sb, "\nNegative prompt: ");
    sb_puts(&sb, negative);
  }
  sb_puts(&sb, "\n");
  snprintf(num, sizeof num, "%d", steps);
  add_param(&sb, &first, "Steps", num);
  add_param(&sb, &first, "Sampler", sampler_name);
  python_float_repr(cfg_scale, num, sizeof num);
  add_param(&sb, &first, "CFG scale", num);
  snprintf(num, sizeof num, "%llu", (unsigned long long)seed);
  add_param(&sb, &first, "Seed", num);
  snprintf(num, sizeof num, "%dx%d", width, height);
  add_param(&sb, &first, "Size", num);
  add_param(&sb, &first, "Model hash", model_hash);
  add_param(&sb, &first, "Model", model_name);
  if (extra && *extra) {
    if (!first) sb_puts(&sb, ", ");
    first = 0;
    sb_puts(&sb, extra);
  }
  add_param(&sb, &first, "Version", "sdprune " SDPRUNE_VERSION);
  if (sb.oom) {
    free(sb.data);
    return NULL;
  }
  /* Python's str.strip() on the whole text. */
  size_t start = 0, end = sb.len;
  while (start < end && is_py_space((unsigned char)sb.data[start])) start++;
  while (end > start && is_py_space((unsigned char)sb.data[end - 1])) end--;
  memmove(sb.data, sb.data + start, end - start);
  sb.data[end - start] = '\0';
  return sb.data;
}
