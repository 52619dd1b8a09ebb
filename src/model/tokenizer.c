/* CLIP byte-level BPE tokenizer (openai CLIP simple_tokenizer.py): vocabulary and merges loading,
 * regex pre-tokenization (PCRE2 with Unicode properties), byte-to-unicode mapping, BPE on token ids
 * with a per-instance word cache. Text cleaning (ftfy, html.unescape, lower) is tokenizer_text.c. */
#include "model/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "model/tokenizer_text.h"

/* Upstream reads merges.txt lines [1 : 49152-256-2+1]: the first 48894 merges after the header. */
#define MAX_MERGES (49152 - 256 - 2)
#define CACHE_MAX_WORDS 65536 /* cleared when full; prompts repeat few words */

/* Open-addressing map from byte strings to int32 (vocabulary, word cache). */
typedef struct {
  char **keys;
  int32_t *vals;
  size_t cap, count; /* cap a power of two */
} str_map;

/* Open-addressing map from an id pair to its merge rank and merged id. */
typedef struct {
  uint64_t *keys; /* (first << 32 | second) + 1; 0 marks an empty slot */
  int32_t *rank, *merged;
  size_t cap, count;
} pair_map;

struct sd_tokenizer {
  str_map vocab;
  pair_map merges;
  int32_t byte_id[256];     /* id of the byte's unicode character */
  int32_t byte_eow_id[256]; /* id of that character + "</w>" */
  int32_t bos, eos, pad;
  pcre2_code *pattern;
  pcre2_match_data *match;
  str_map cache;      /* pre-token bytes -> offset in cache_ids */
  int32_t *cache_ids; /* at each offset: n, then n ids */
  size_t cache_n, cache_cap;
  int32_t *word, *word_tmp; /* BPE scratch */
  size_t word_cap;
  int32_t *tokens;
  size_t tokens_n, tokens_cap;
};

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}
static uint64_t hash_u64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

static void str_map_free(str_map *m) {
  for (size_t i = 0; i < m->cap; i++)
    free(m->keys[i]);
  free(m->keys);
  free(m->vals);
  memset(m, 0, sizeof *m);
}

static int str_map_init(str_map *m, size_t expected) {
  size_t cap = 16;
  while (cap < 2 * expected)
    cap *= 2;
  m->keys = calloc(cap, sizeof *m->keys);
  m->vals = calloc(cap, sizeof *m->vals);
  m->cap = cap;
  m->count = 0;
  return m->keys && m->vals ? 0 : -1;
}

/* Slot holding key s[0..n), or the empty slot where it would go. */
static size_t str_map_slot(const str_map *m, const char *s, size_t n) {
  size_t i = (size_t)hash_bytes(s, n) & (m->cap - 1);
  while (m->keys[i] && !(strlen(m->keys[i]) == n && memcmp(m->keys[i], s, n) == 0))
    i = (i + 1) & (m->cap - 1);
  return i;
}

static int str_map_get(const str_map *m, const char *s, size_t n, int32_t *val) {
  size_t i = str_map_slot(m, s, n);
  if (!m->keys[i]) return 0;
  *val = m->vals[i];
  return 1;
}

/* Inserts or overwrites; the map never fills beyond half (callers size it, the cache clears). */
static int str_map_put(str_map *m, const char *s, size_t n, int32_t val) {
  size_t i = str_map_slot(m, s, n);
  if (!m->keys[i]) {
    if (!(m->keys[i] = strndup(s, n))) return -1;
    m->count++;
  }
  m->vals[i] = val;
  return 0;
}

static size_t pair_slot(const pair_map *m, uint64_t key) {
  size_t i = (size_t)hash_u64(key) & (m->cap - 1);
  while (m->keys[i] && m->keys[i] != key)
    i = (i + 1) & (m->cap - 1);
  return i;
}
static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1; }

/* byte_encoder of simple_tokenizer.bytes_to_unicode: printable Latin-1 bytes map to themselves,
 * the other 68 bytes to U+0100.. in byte order. */
static void bytes_to_unicode(uint32_t cp[256]) {
  uint32_t next = 256;
  for (int b = 0; b < 256; b++) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    cp[b] = printable ? (uint32_t)b : next++;
  }
}

static size_t put_utf8(char *s, uint32_t c) {
  if (c < 0x80) {
    s[0] = (char)c;
    return 1;
  }
  s[0] = (char)(0xC0 | (c >> 6)); /* byte_encoder values stay below U+0800 */
  s[1] = (char)(0x80 | (c & 0x3F));
  return 2;
}

static int file_error(sd_error *err, const char *path) { return sd_fail(err, "%s: %s", path, strerror(errno)); }

static int load_vocab(sd_tokenizer *tok, const char *path, sd_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return file_error(err, path);
  json_error_t jerr;
  json_t *root = json_loadf(f, 0, &jerr);
  fclose(f);
  if (!root) return sd_fail(err, "%s:%d: invalid JSON: %s", path, jerr.line, jerr.text);
  int rc = -1;
  if (!json_is_object(root)) {
    sd_fail(err, "%s: expected a JSON object of token -> id", path);
    goto done;
  }
  if (str_map_init(&tok->vocab, json_object_size(root))) {
    sd_fail(err, "%s: out of memory", path);
    goto done;
  }
  const char *key;
  json_t *value;
  json_object_foreach(root, key, value) {
    json_int_t id = json_integer_value(value);
    if (!json_is_integer(value) || id < 0 || id > INT32_MAX) {
      sd_fail(err, "%s: token \"%s\" has no valid integer id", path, key);
      goto done;
    }
    if (str_map_put(&tok->vocab, key, strlen(key), (int32_t)id)) {
      sd_fail(err, "%s: out of memory", path);
      goto done;
    }
  }
  if (!str_map_get(&tok->vocab, "<|startoftext|>", 15, &tok->bos) ||
      !str_map_get(&tok->vocab, "<|endoftext|>", 13, &tok->eos)) {
    sd_fail(err, "%s: <|startoftext|> or <|endoftext|> missing", path);
    goto done;
  }
  uint32_t cp[256];
  bytes_to_unicode(cp);
  for (int b = 0; b < 256; b++) {
    char s[8];
    size_t n = put_utf8(s, cp[b]);
    memcpy(s + n, "</w>", 4);
    if (!str_map_get(&tok->vocab, s, n, &tok->byte_id[b]) ||
        !str_map_get(&tok->vocab, s, n + 4, &tok->byte_eow_id[b])) {
      sd_fail(err, "%s: byte 0x%02X has no token (not a byte-level BPE vocabulary)", path, b);
      goto done;
    }
  }
  rc = 0;
done:
  json_decref(root);
  return rc;
}

static int load_merges(sd_tokenizer *tok, const char *path, sd_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return file_error(err, path);
  pair_map *m = &tok->merges;
  m->cap = 1;
  while (m->cap < 2 * MAX_MERGES)
    m->cap *= 2;
  m->keys = calloc(m->cap, sizeof *m->keys);
  m->rank = calloc(m->cap, sizeof *m->rank);
  m->merged = calloc(m->cap, sizeof *m->merged);
  char *line = NULL, *joined = NULL;
  size_t line_cap = 0;
  ssize_t len;
  int rc = -1, line_no = 0, rank = 0;
  if (!m->keys || !m->rank || !m->merged) {
    sd_fail(err, "%s: out of memory", path);
    goto done;
  }
  while (rank < MAX_MERGES && (len = getline(&line, &line_cap, f)) >= 0) {
    if (++line_no == 1) continue; /* "#version: 0.2", skipped unconditionally upstream */
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = 0;
    if (len == 0) continue;
    char *space = strchr(line, ' ');
    if (!space || space == line || !space[1] || strchr(space + 1, ' ')) {
      sd_fail(err, "%s:%d: expected two symbols separated by one space", path, line_no);
      goto done;
    }
    *space = 0;
    const char *first = line, *second = space + 1;
    int32_t a, b, ab;
    free(joined);
    if (asprintf(&joined, "%s%s", first, second) < 0) {
      joined = NULL;
      sd_fail(err, "%s: out of memory", path);
      goto done;
    }
    if (!str_map_get(&tok->vocab, first, strlen(first), &a) || !str_map_get(&tok->vocab, second, strlen(second), &b) ||
        !str_map_get(&tok->vocab, joined, strlen(joined), &ab)) {
      sd_fail(err, "%s:%d: merge \"%s %s\" uses a token missing from vocab.json", path, line_no, first, second);
      goto done;
    }
    size_t i = pair_slot(m, pair_key(a, b));
    if (!m->keys[i]) m->count++;
    m->keys[i] = pair_key(a, b);
    m->rank[i] = rank++; /* a repeated pair keeps its last rank, as dict(zip(merges, ranks)) */
    m->merged[i] = ab;
  }
  if (ferror(f)) {
    file_error(err, path);
    goto done;
  }
  rc = 0;
done:
  free(line);
  free(joined);
  fclose(f);
  return rc;
}

static void read_pad_token(sd_tokenizer *tok, const char *dir);

int sd_tokenizer_load(const char *dir, sd_tokenizer **out, sd_error *err) {
  *out = NULL;
  sd_tokenizer *tok = sd_calloc(1, sizeof *tok, err);
  if (!tok) return -1;
  char *path = NULL;
  int rc = -1;
  if (asprintf(&path, "%s/vocab.json", dir) < 0 || load_vocab(tok, path, err)) goto done;
  free(path);
  if (asprintf(&path, "%s/merges.txt", dir) < 0 || load_merges(tok, path, err)) goto done;

  /* simple_tokenizer's pattern, compiled as regex.IGNORECASE; \p classes need UCP. */
  static const char pattern[] = "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|"
                                "[^\\s\\p{L}\\p{N}]+";
  int ecode;
  PCRE2_SIZE eoff;
  tok->pattern = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_CASELESS,
                               &ecode, &eoff, NULL);
  if (!tok->pattern) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(ecode, msg, sizeof msg);
    sd_fail(err, "tokenizer pattern: %s at offset %zu", (const char *)msg, (size_t)eoff);
    goto done;
  }
  tok->match = pcre2_match_data_create_from_pattern(tok->pattern, NULL);
  if (!tok->match || str_map_init(&tok->cache, CACHE_MAX_WORDS)) {
    sd_fail(err, "tokenizer: out of memory");
    goto done;
  }
  tok->pad = tok->eos;
  read_pad_token(tok, dir);
  rc = 0;
done:
  free(path);
  if (rc)
    sd_tokenizer_free(tok);
  else
    *out = tok;
  return rc;
}

void sd_tokenizer_free(sd_tokenizer *tok) {
  if (!tok) return;
  str_map_free(&tok->vocab);
  str_map_free(&tok->cache);
  free(tok->merges.keys);
  free(tok->merges.rank);
  free(tok->merges.merged);
  pcre2_match_data_free(tok->match);
  pcre2_code_free(tok->pattern);
  free(tok->cache_ids);
  free(tok->word);
  free(tok->word_tmp);
  free(tok->tokens);
  free(tok);
}

int32_t sd_tokenizer_bos(const sd_tokenizer *tok) { return tok->bos; }
int32_t sd_tokenizer_eos(const sd_tokenizer *tok) { return tok->eos; }
int32_t sd_tokenizer_pad(const sd_tokenizer *tok) { return tok->pad; }
void sd_tokenizer_set_pad(sd_tokenizer *tok, int32_t id) { tok->pad = id; }

/* pad_token of DIR/tokenizer_config.json (a string or {"content": ...}), looked up in the vocabulary:
 * SD 2.x diffusers folders pad with "!" (id 0), SD 1.x with <|endoftext|>. Absent: keep eos. */
static void read_pad_token(sd_tokenizer *tok, const char *dir) {
  char path[4200];
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  json_t *root = json_load_file(path, 0, NULL);
  json_t *pad = json_object_get(root, "pad_token");
  if (json_is_object(pad)) pad = json_object_get(pad, "content");
  int32_t id;
  if (json_is_string(pad) && str_map_get(&tok->vocab, json_string_value(pad), strlen(json_string_value(pad)), &id))
    tok->pad = id;
  json_decref(root);
}

static int reserve(int32_t **v, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : 256;
  while (c < need)
    c *= 2;
  int32_t *p = realloc(*v, c * sizeof *p);
  if (!p) return -1;
  *v = p;
  *cap = c;
  return 0;
}

/* simple_tokenizer.bpe on one pre-token: repeatedly merge every occurrence of the lowest-ranked
 * adjacent pair, left to right. Leaves the ids in tok->word[0..*n). */
static int bpe_word(sd_tokenizer *tok, const unsigned char *s, size_t len, size_t *n_out) {
  size_t tmp_cap = tok->word_cap;
  if (reserve(&tok->word, &tok->word_cap, len) || reserve(&tok->word_tmp, &tmp_cap, tok->word_cap)) return -1;
  int32_t *w = tok->word;
  size_t n = len;
  for (size_t i = 0; i < len; i++)
    w[i] = i + 1 < len ? tok->byte_id[s[i]] : tok->byte_eow_id[s[i]];
  const pair_map *m = &tok->merges;
  while (n > 1) {
    int32_t best = INT32_MAX, first = 0, second = 0, merged = 0;
    for (size_t i = 0; i + 1 < n; i++) {
      size_t slot = pair_slot(m, pair_key(w[i], w[i + 1]));
      if (m->keys[slot] && m->rank[slot] < best) {
        best = m->rank[slot];
        first = w[i];
        second = w[i + 1];
        merged = m->merged[slot];
      }
    }
    if (best == INT32_MAX) break;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
      if (w[i] == first && i + 1 < n && w[i + 1] == second) {
        tok->word_tmp[k++] = merged;
        i += 2;
      } else {
        tok->word_tmp[k++] = w[i++];
      }
    }
    memcpy(w, tok->word_tmp, k * sizeof *w);
    n = k;
  }
  *n_out = n;
  return 0;
}

/* Appends the ids of one pre-token to tok->tokens, through the cache. */
static int encode_word(sd_tokenizer *tok, const char *s, size_t len, sd_error *err) {
  int32_t off, special = -1;
  /* upstream seeds its cache with the two special tokens, so they map to their own ids */
  if (len == 15 && memcmp(s, "<|startoftext|>", 15) == 0) special = tok->bos;
  if (len == 13 && memcmp(s, "<|endoftext|>", 13) == 0) special = tok->eos;
  if (special >= 0) {
    if (reserve(&tok->tokens, &tok->tokens_cap, tok->tokens_n + 1)) return sd_fail(err, "out of memory");
    tok->tokens[tok->tokens_n++] = special;
    return 0;
  }
  const int32_t *ids;
  size_t n;
  if (str_map_get(&tok->cache, s, len, &off)) {
    n = (size_t)tok->cache_ids[off];
    ids = tok->cache_ids + off + 1;
  } else {
    if (bpe_word(tok, (const unsigned char *)s, len, &n)) return sd_fail(err, "out of memory");
    if (tok->cache.count >= CACHE_MAX_WORDS) { /* start afresh rather than grow without bound */
      str_map_free(&tok->cache);
      tok->cache_n = 0;
      if (str_map_init(&tok->cache, CACHE_MAX_WORDS)) return sd_fail(err, "out of memory");
    }
    if (reserve(&tok->cache_ids, &tok->cache_cap, tok->cache_n + n + 1) ||
        str_map_put(&tok->cache, s, len, (int32_t)tok->cache_n))
      return sd_fail(err, "out of memory");
    tok->cache_ids[tok->cache_n] = (int32_t)n;
    memcpy(tok->cache_ids + tok->cache_n + 1, tok->word, n * sizeof *tok->word);
    ids = tok->cache_ids + tok->cache_n + 1;
    tok->cache_n += n + 1;
  }
  if (reserve(&tok->tokens, &tok->tokens_cap, tok->tokens_n + n)) return sd_fail(err, "out of memory");
  memcpy(tok->tokens + tok->tokens_n, ids, n * sizeof *ids);
  tok->tokens_n += n;
  return 0;
}

int sd_tokenizer_encode_n(sd_tokenizer *tok, const char *utf8_prompt, size_t len, int32_t ids[SD_TOKENIZER_CONTEXT],
                          int *n_tokens_before_truncation, sd_error *err) {
  char *text;
  size_t text_len;
  if (sd_tok_clean_text(utf8_prompt, len, &text, &text_len, err)) return -1;
  tok->tokens_n = 0;
  int rc = 0;
  for (PCRE2_SIZE pos = 0; pos < text_len;) {
    int r = pcre2_match(tok->pattern, (PCRE2_SPTR)text, text_len, pos, PCRE2_NO_UTF_CHECK, tok->match, NULL);
    if (r == PCRE2_ERROR_NOMATCH) break;
    if (r < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(r, msg, sizeof msg);
      rc = sd_fail(err, "tokenizer regex: %s", (const char *)msg);
      break;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(tok->match);
    if (ov[1] <= ov[0]) break; /* every alternative consumes at least one character */
    if ((rc = encode_word(tok, text + ov[0], ov[1] - ov[0], err))) break;
    pos = ov[1];
  }
  free(text);
  if (rc) return -1;
  const size_t max_tokens = SD_TOKENIZER_CONTEXT - 2;
  size_t n = tok->tokens_n < max_tokens ? tok->tokens_n : max_tokens;
  ids[0] = tok->bos;
  if (n) memcpy(ids + 1, tok->tokens, n * sizeof *ids);
  ids[n + 1] = tok->eos;
  for (size_t i = n + 2; i < SD_TOKENIZER_CONTEXT; i++)
    ids[i] = tok->pad;
  if (n_tokens_before_truncation) *n_tokens_before_truncation = (int)tok->tokens_n;
  return 0;
}

int sd_tokenizer_encode(sd_tokenizer *tok, const char *utf8_prompt, int32_t ids[SD_TOKENIZER_CONTEXT],
                        int *n_tokens_before_truncation, sd_error *err) {
  return sd_tokenizer_encode_n(tok, utf8_prompt, strlen(utf8_prompt), ids, n_tokens_before_truncation, err);
}
