/* Text cleaning of openai CLIP's simple_tokenizer (basic_clean + whitespace_clean + lower), done on
 * code-point arrays. ftfy.fix_text is reproduced for what it does to well-formed text: HTML entity
 * fixing, C1 controls, Latin ligatures, character width, curly quotes, line breaks, terminal escapes,
 * control characters, NFC (utf8proc), repeated per line until nothing changes. Not reproduced: ftfy's
 * mojibake detection (fix_encoding), which only alters text that looks mis-decoded. */
#include "model/tokenizer_text.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "model/tokenizer_tables.h"

void sd_cpbuf_free(sd_cpbuf *b) {
  free(b->v);
  b->v = NULL;
  b->n = b->cap = 0;
}

static void push(sd_cpbuf *b, uint32_t c) {
  if (b->n == b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 64;
    uint32_t *v = realloc(b->v, cap * sizeof *v);
    if (!v) {
      b->oom = 1;
      return;
    }
    b->v = v;
    b->cap = cap;
  }
  b->v[b->n++] = c;
}

static void push_n(sd_cpbuf *b, const uint32_t *c, size_t n) {
  for (size_t i = 0; i < n; i++)
    push(b, c[i]);
}

static void push_utf8(sd_cpbuf *b, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate(p, -1, &c);
    if (k <= 0) return; /* tables are generated valid UTF-8 */
    push(b, (uint32_t)c);
    p += k;
  }
}

int sd_utf8_decode(const char *s, size_t len, sd_cpbuf *out, sd_error *err) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  out->n = 0;
  while (i < len) {
    utf8proc_int32_t c;
    /* utf8proc_iterate rejects overlongs, surrogates and values past U+10FFFF */
    utf8proc_ssize_t k = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &c);
    if (k <= 0 || c < 0) return sd_fail(err, "invalid UTF-8 at byte %zu", i);
    push(out, (uint32_t)c);
    i += (size_t)k;
  }
  if (out->oom) return sd_fail(err, "out of memory decoding UTF-8");
  return 0;
}

static char *utf8_encode(const sd_cpbuf *b, size_t *len) {
  char *s = malloc(4 * b->n + 1);
  if (!s) return NULL;
  size_t n = 0;
  for (size_t i = 0; i < b->n; i++)
    n += (size_t)utf8proc_encode_char((utf8proc_int32_t)b->v[i], (utf8proc_uint8_t *)s + n);
  s[n] = 0;
  if (len) *len = n;
  return s;
}

/* ---- table lookups ---- */

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}
static int in_list(const uint32_t *list, size_t n, uint32_t c) {
  return bsearch(&c, list, n, sizeof *list, cmp_u32) != NULL;
}
static const sd_tok_cpmap *find_map(const sd_tok_cpmap *map, size_t n, uint32_t c) {
  return bsearch(&c, map, n, sizeof *map, cmp_u32); /* cp is the first member */
}

/* Entity lookup by the code points of its name (ASCII only in the tables). */
static const char *find_entity(const sd_tok_entity *tab, size_t n, const uint32_t *name, size_t len) {
  char key[40];
  if (len >= sizeof key) return NULL;
  for (size_t i = 0; i < len; i++) {
    if (name[i] >= 0x80) return NULL;
    key[i] = (char)name[i];
  }
  key[len] = 0;
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(tab[mid].name, key);
    if (c == 0) return tab[mid].value;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

static int is_space(uint32_t c) { return in_list(sd_space_codepoints, sd_space_codepoints_count, c); }
static int is_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static int is_hex(uint32_t c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
static int is_alnum(uint32_t c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* html.unescape's numeric reference: digits v[0..n) in base 10 or 16. Pushes 0 or 1 code point. */
static void html_numeric(sd_cpbuf *out, const uint32_t *v, size_t n, int hex) {
  uint32_t num = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t d = is_digit(v[i]) ? v[i] - '0' : (v[i] | 0x20) - 'a' + 10;
    num = num > 0x110000 ? 0x110000 : num * (hex ? 16 : 10) + d; /* saturate: anything past U+10FFFF acts alike */
  }
  const sd_tok_cpmap *m = find_map(sd_html_invalid_charrefs, sd_html_invalid_charrefs_count, num);
  if (m)
    push(out, m->to[0]);
  else if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF)
    push(out, 0xFFFD);
  else if (!in_list(sd_html_invalid_codepoints, sd_html_invalid_codepoints_count, num))
    push(out, num);
}

/* Python's html.unescape. */
static void html_unescape(const sd_cpbuf *in, sd_cpbuf *out) {
  out->n = 0;
  const uint32_t *v = in->v;
  size_t n = in->n, i = 0;
  while (i < n) {
    if (v[i] != '&') {
      push(out, v[i++]);
      continue;
    }
    size_t j = i + 1;
    if (j < n && v[j] == '#') { /* '#[0-9]+;?' or '#[xX][0-9a-fA-F]+;?' */
      int hex = j + 1 < n && (v[j + 1] == 'x' || v[j + 1] == 'X');
      size_t d0 = j + 1 + (size_t)hex, d = d0;
      while (d < n && (hex ? is_hex(v[d]) : is_digit(v[d])))
        d++;
      if (d > d0) {
        html_numeric(out, v + d0, d - d0, hex);
        i = d < n && v[d] == ';' ? d + 1 : d;
        continue;
      }
      push(out, v[i++]);
      continue;
    }
    /* named: '[^\t\n\f <&#;]{1,32};?' then the longest known prefix of at least 2 characters */
    size_t e = j;
    while (e < n && e - j < 32 && v[e] != '\t' && v[e] != '\n' && v[e] != '\f' && v[e] != ' ' && v[e] != '<' &&
           v[e] != '&' && v[e] != '#' && v[e] != ';')
      e++;
    if (e == j) {
      push(out, v[i++]);
      continue;
    }
    if (e < n && v[e] == ';') e++;
    size_t len = e - j;
    const char *val = find_entity(sd_html5_entities, sd_html5_entities_count, v + j, len);
    size_t used = len;
    for (size_t x = len - 1; !val && x > 1; x--) {
      val = find_entity(sd_html5_entities, sd_html5_entities_count, v + j, x);
      used = x;
    }
    if (val) {
      push_utf8(out, val);
      push_n(out, v + j + used, len - used);
    } else {
      push_n(out, v + i, e - i);
    }
    i = e;
  }
}

/* ftfy.fixes.unescape_html: '&#?[0-9A-Za-z]{1,24};' replaced when it names an entity (upper-cased
 * ones too) or is a numeric reference that html.unescape decodes completely. */
static void ftfy_unescape(const sd_cpbuf *in, sd_cpbuf *out) {
  out->n = 0;
  const uint32_t *v = in->v;
  size_t n = in->n, i = 0;
  while (i < n) {
    if (v[i] == '&') {
      size_t j = i + 1, hash = j < n && v[j] == '#';
      size_t a = j + hash, e = a;
      while (e < n && e - a < 24 && is_alnum(v[e]))
        e++;
      if (e > a && e < n && v[e] == ';') {
        const char *val = hash ? NULL : find_entity(sd_ftfy_entities, sd_ftfy_entities_count, v + j, e + 1 - j);
        if (val) {
          push_utf8(out, val);
          i = e + 1;
          continue;
        }
        if (hash) {
          sd_cpbuf ent = {0}, dec = {0};
          push_n(&ent, v + i, e + 1 - i);
          html_unescape(&ent, &dec);
          int has_semicolon = 0;
          for (size_t k = 0; k < dec.n; k++)
            has_semicolon |= dec.v[k] == ';';
          if (ent.oom || dec.oom) out->oom = 1;
          push_n(out, has_semicolon ? ent.v : dec.v, has_semicolon ? ent.n : dec.n);
          sd_cpbuf_free(&ent);
          sd_cpbuf_free(&dec);
          i = e + 1;
          continue;
        }
        push_n(out, v + i, e + 1 - i);
        i = e + 1;
        continue;
      }
    }
    push(out, v[i++]);
  }
}

/* Character-wise ftfy fixes applied in ftfy's order: C1 controls, ligatures, width, curly quotes,
 * line breaks; then terminal escapes and control characters. */
static void ftfy_char_fixes(const sd_cpbuf *in, sd_cpbuf *out, sd_cpbuf *tmp) {
  tmp->n = 0;
  for (size_t i = 0; i < in->n; i++) {
    uint32_t c = in->v[i];
    const sd_tok_cpmap *m;
    if ((m = find_map(sd_c1_map, sd_c1_map_count, c))) c = m->to[0];
    if ((m = find_map(sd_ligature_map, sd_ligature_map_count, c)) ||
        (m = find_map(sd_width_map, sd_width_map_count, c))) {
      push_n(tmp, m->to, (size_t)m->n);
      continue;
    }
    push(tmp, c);
  }
  out->n = 0;
  for (size_t i = 0; i < tmp->n; i++) {
    uint32_t c = tmp->v[i];
    if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B))
      c = '\'';
    else if (c >= 0x201C && c <= 0x201F)
      c = '"';
    else if (c == '\r') {
      if (i + 1 < tmp->n && tmp->v[i + 1] == '\n') i++;
      c = '\n';
    } else if (c == 0x2028 || c == 0x2029 || c == 0x85)
      c = '\n';
    push(out, c);
  }
  /* ANSI_RE '\033\[((?:\d|;)*)([a-zA-Z])' */
  tmp->n = 0;
  for (size_t i = 0; i < out->n; i++) {
    if (out->v[i] == 0x1B && i + 1 < out->n && out->v[i + 1] == '[') {
      size_t e = i + 2;
      while (e < out->n && (is_digit(out->v[e]) || out->v[e] == ';'))
        e++;
      uint32_t f = e < out->n ? out->v[e] : 0;
      if ((f >= 'a' && f <= 'z') || (f >= 'A' && f <= 'Z')) {
        i = e;
        continue;
      }
    }
    push(tmp, out->v[i]);
  }
  out->n = 0;
  for (size_t i = 0; i < tmp->n; i++) {
    uint32_t c = tmp->v[i];
    int control = c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
                  c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
    if (!control) push(out, c);
  }
}

static int nfc(sd_cpbuf *b, sd_error *err) {
  size_t len;
  char *s = utf8_encode(b, &len);
  if (!s) return sd_fail(err, "out of memory");
  utf8proc_uint8_t *composed = NULL;
  utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &composed,
                                    (utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  free(s);
  if (r < 0) return sd_fail(err, "NFC normalisation failed: %s", utf8proc_errmsg(r));
  int rc = sd_utf8_decode((const char *)composed, (size_t)r, b, err);
  free(composed);
  return rc;
}

/* ftfy.fix_and_explain on one line (segment), repeated until the text stops changing. */
static int ftfy_segment(sd_cpbuf *seg, int unescape, sd_cpbuf *a, sd_cpbuf *b, sd_cpbuf *c, sd_error *err) {
  for (int round = 0; round < 100; round++) {
    const sd_cpbuf *src = seg;
    if (unescape) {
      ftfy_unescape(seg, a);
      src = a;
    }
    ftfy_char_fixes(src, b, c);
    if (a->oom || b->oom || c->oom) return sd_fail(err, "out of memory");
    if (nfc(b, err)) return -1;
    int same = b->n == seg->n && (b->n == 0 || memcmp(b->v, seg->v, b->n * sizeof *b->v) == 0);
    sd_cpbuf t = *seg;
    *seg = *b;
    *b = t;
    if (same) return 0;
  }
  return 0;
}

/* Python's str.lower, including the final-sigma rule; "cased" and "case-ignorable" are approximated
 * from general categories. */
static int cased(uint32_t c) {
  utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
  return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}
static int case_ignorable(uint32_t c) {
  utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
  return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
         k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK || c == '\'' || c == '.' || c == ':' || c == 0xB7 ||
         c == 0x2018 || c == 0x2019 || c == 0x2024 || c == 0x2027;
}
static void py_lower(const sd_cpbuf *in, sd_cpbuf *out) {
  out->n = 0;
  for (size_t i = 0; i < in->n; i++) {
    uint32_t c = in->v[i];
    if (c == 0x03A3) {
      size_t j = i;
      while (j > 0 && case_ignorable(in->v[j - 1]))
        j--;
      int before = j > 0 && cased(in->v[j - 1]);
      size_t k = i + 1;
      while (k < in->n && case_ignorable(in->v[k]))
        k++;
      int after = k < in->n && cased(in->v[k]);
      push(out, before && !after ? 0x03C2 : 0x03C3);
      continue;
    }
    const sd_tok_cpmap *m = find_map(sd_lower_map, sd_lower_map_count, c);
    if (m)
      push_n(out, m->to, (size_t)m->n);
    else
      push(out, c);
  }
}

int sd_tok_clean_text(const char *utf8, size_t len, char **out, size_t *out_len, sd_error *err) {
  sd_cpbuf text = {0}, seg = {0}, a = {0}, b = {0}, c = {0}, fixed = {0};
  int rc = -1;
  *out = NULL;
  if (sd_utf8_decode(utf8, len, &text, err)) goto done;

  /* ftfy.fix_text: per line (the '\n' kept with it); HTML unescaping is "auto", i.e. off from the
   * first line containing '<' onwards. */
  int unescape = 1;
  for (size_t pos = 0; pos < text.n;) {
    size_t end = pos;
    while (end < text.n && text.v[end] != '\n')
      end++;
    if (end < text.n) end++;
    seg.n = 0;
    push_n(&seg, text.v + pos, end - pos);
    for (size_t i = pos; i < end; i++)
      if (text.v[i] == '<') unescape = 0;
    if (ftfy_segment(&seg, unescape, &a, &b, &c, err)) goto done;
    push_n(&fixed, seg.v, seg.n);
    pos = end;
  }
  /* html.unescape(html.unescape(text)) */
  html_unescape(&fixed, &a);
  html_unescape(&a, &b);
  /* re.sub(r'\s+', ' ', text).strip() */
  fixed.n = 0;
  for (size_t i = 0; i < b.n; i++) {
    if (is_space(b.v[i])) {
      while (i + 1 < b.n && is_space(b.v[i + 1]))
        i++;
      if (fixed.n > 0 && i + 1 < b.n) push(&fixed, ' ');
    } else {
      push(&fixed, b.v[i]);
    }
  }
  py_lower(&fixed, &a);
  if (text.oom || seg.oom || a.oom || b.oom || fixed.oom) {
    sd_fail(err, "out of memory cleaning text");
    goto done;
  }
  *out = utf8_encode(&a, out_len);
  if (!*out) {
    sd_fail(err, "out of memory cleaning text");
    goto done;
  }
  rc = 0;
done:
  sd_cpbuf_free(&text);
  sd_cpbuf_free(&seg);
  sd_cpbuf_free(&a);
  sd_cpbuf_free(&b);
  sd_cpbuf_free(&c);
  sd_cpbuf_free(&fixed);
  return rc;
}
