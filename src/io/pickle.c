/* Restricted unpickler for torch state dicts (see pickle.h). Interprets a fixed opcode subset into a
 * value tree; allowlisted globals become markers, "calls" to them are emulated, everything else is
 * refused. It is not a general unpickler: no classes, no instances, no protocol-0 text opcodes. */
#include "io/pickle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MARK_DEPTH 4096

typedef struct {
  const unsigned char *p;
  size_t len, pos;
  pk_doc *doc;
  pk_value **stack;
  int sp, cap;
  int *marks;
  int n_marks, cap_marks;
  pk_value **memo;
  size_t n_memo, memo_count; /* slots allocated, slots set (MEMOIZE's next index) */
  sd_error *err;
} unpickler;

static pk_value *new_value(unpickler *u, pk_kind kind) {
  pk_doc *d = u->doc;
  if (d->n_all == d->cap_all) {
    int cap = d->cap_all ? d->cap_all * 2 : 1024;
    pk_value **a = realloc(d->all, sizeof *a * (size_t)cap);
    if (!a) {
      sd_fail(u->err, "out of memory while unpickling");
      return NULL;
    }
    d->all = a;
    d->cap_all = cap;
  }
  pk_value *v = calloc(1, sizeof *v);
  if (!v) {
    sd_fail(u->err, "out of memory while unpickling");
    return NULL;
  }
  v->kind = kind;
  d->all[d->n_all++] = v;
  return v;
}

static int add_item(unpickler *u, pk_value *c, pk_value *item) {
  if (c->n == c->cap) {
    int cap = c->cap ? c->cap * 2 : 4;
    pk_value **a = realloc(c->items, sizeof *a * (size_t)cap);
    if (!a) return sd_fail(u->err, "out of memory while unpickling");
    c->items = a;
    c->cap = cap;
  }
  c->items[c->n++] = item;
  return 0;
}

static int dict_set(unpickler *u, pk_value *d, pk_value *k, pk_value *v) {
  if (d->kind != PK_DICT) return sd_fail(u->err, "SETITEM on a non-dict at byte %zu", u->pos);
  /* A repeated key is kept twice (no quadratic search); the store rejects duplicate tensor names. */
  if (add_item(u, d, k) || add_item(u, d, v)) return -1;
  return 0;
}

static int push(unpickler *u, pk_value *v) {
  if (!v) return -1;
  if (u->sp == u->cap) {
    int cap = u->cap ? u->cap * 2 : 256;
    pk_value **s = realloc(u->stack, sizeof *s * (size_t)cap);
    if (!s) return sd_fail(u->err, "out of memory while unpickling");
    u->stack = s;
    u->cap = cap;
  }
  u->stack[u->sp++] = v;
  return 0;
}

static int floor_sp(const unpickler *u) { return u->n_marks ? u->marks[u->n_marks - 1] : 0; }

static pk_value *pop(unpickler *u, const char *op) {
  if (u->sp <= floor_sp(u)) {
    sd_fail(u->err, "%s at byte %zu pops an empty stack (malformed pickle)", op, u->pos);
    return NULL;
  }
  return u->stack[--u->sp];
}

static pk_value *top(unpickler *u, const char *op) {
  if (u->sp <= floor_sp(u)) {
    sd_fail(u->err, "%s at byte %zu needs a value on the stack (malformed pickle)", op, u->pos);
    return NULL;
  }
  return u->stack[u->sp - 1];
}

/* The container just below the items of a MARK popped at `from`. */
static pk_value *below_mark(unpickler *u, int from, const char *op) {
  if (from <= floor_sp(u)) {
    sd_fail(u->err, "%s at byte %zu has no container below its MARK (malformed pickle)", op, u->pos);
    return NULL;
  }
  return u->stack[from - 1];
}

/* Pops to the last MARK; returns the index of the first item above it, or -1. */
static int pop_mark(unpickler *u, const char *op) {
  if (!u->n_marks) return sd_fail(u->err, "%s at byte %zu without a MARK (malformed pickle)", op, u->pos);
  return u->marks[--u->n_marks];
}

static const unsigned char *need(unpickler *u, size_t n) {
  if (n > u->len - u->pos) {
    sd_fail(u->err, "truncated pickle: needs %zu bytes at byte %zu of %zu", n, u->pos, u->len);
    return NULL;
  }
  const unsigned char *q = u->p + u->pos;
  u->pos += n;
  return q;
}

static uint64_t le(const unsigned char *q, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = (v << 8) | q[i];
  return v;
}

static int push_int(unpickler *u, int64_t x) {
  pk_value *v = new_value(u, PK_INT);
  if (!v) return -1;
  v->i = x;
  return push(u, v);
}

static int push_str(unpickler *u, size_t n) {
  if (n > u->len - u->pos) return sd_fail(u->err, "truncated pickle: string of %zu bytes at byte %zu of %zu", n, u->pos, u->len);
  pk_value *v = new_value(u, PK_STR);
  if (!v) return -1;
  v->s = malloc(n + 1);
  if (!v->s) return sd_fail(u->err, "out of memory while unpickling");
  memcpy(v->s, u->p + u->pos, n);
  v->s[n] = 0;
  v->len = n;
  u->pos += n;
  return push(u, v);
}

static int memo_put(unpickler *u, size_t idx) {
  pk_value *v = top(u, "BINPUT");
  if (!v) return -1;
  if (idx > u->len) return sd_fail(u->err, "memo index %zu at byte %zu is implausibly large", idx, u->pos);
  if (idx >= u->n_memo) {
    size_t n = idx + 1 > 2 * u->n_memo ? idx + 1 : 2 * u->n_memo;
    pk_value **m = realloc(u->memo, sizeof *m * n);
    if (!m) return sd_fail(u->err, "out of memory while unpickling");
    memset(m + u->n_memo, 0, sizeof *m * (n - u->n_memo));
    u->memo = m;
    u->n_memo = n;
  }
  if (!u->memo[idx]) u->memo_count++;
  u->memo[idx] = v;
  return 0;
}

static int memo_get(unpickler *u, size_t idx) {
  if (idx >= u->n_memo || !u->memo[idx]) return sd_fail(u->err, "BINGET %zu at byte %zu: no such memo entry", idx, u->pos);
  return push(u, u->memo[idx]);
}

typedef struct {
  const char *module, *name;
  pk_global_kind kind;
  sd_dtype dtype;
} allowed_global;

static const allowed_global allowlist[] = {
    {"collections", "OrderedDict", PK_G_ORDERED_DICT, SD_DTYPE_F32},
    {"torch._utils", "_rebuild_tensor_v2", PK_G_REBUILD_TENSOR_V2, SD_DTYPE_F32},
    {"torch._utils", "_rebuild_parameter", PK_G_REBUILD_PARAMETER, SD_DTYPE_F32},
    {"torch", "FloatStorage", PK_G_STORAGE_TYPE, SD_DTYPE_F32},
    {"torch", "HalfStorage", PK_G_STORAGE_TYPE, SD_DTYPE_F16},
    {"torch", "BFloat16Storage", PK_G_STORAGE_TYPE, SD_DTYPE_BF16},
    {"torch", "DoubleStorage", PK_G_STORAGE_TYPE, SD_DTYPE_F64},
    {"torch", "LongStorage", PK_G_STORAGE_TYPE, SD_DTYPE_I64},
    {"torch", "IntStorage", PK_G_STORAGE_TYPE, SD_DTYPE_I32},
    {"torch", "ShortStorage", PK_G_STORAGE_TYPE, SD_DTYPE_I16},
    {"torch", "CharStorage", PK_G_STORAGE_TYPE, SD_DTYPE_I8},
    {"torch", "ByteStorage", PK_G_STORAGE_TYPE, SD_DTYPE_U8},
    {"torch", "BoolStorage", PK_G_STORAGE_TYPE, SD_DTYPE_BOOL},
    {"torch", "UntypedStorage", PK_G_STORAGE_TYPE, SD_DTYPE_U8},
    {"torch", "float32", PK_G_DTYPE, SD_DTYPE_F32},
    {"torch", "float16", PK_G_DTYPE, SD_DTYPE_F16},
    {"torch", "bfloat16", PK_G_DTYPE, SD_DTYPE_BF16},
    {"torch", "float64", PK_G_DTYPE, SD_DTYPE_F64},
    {"torch", "int64", PK_G_DTYPE, SD_DTYPE_I64},
    {"torch", "int32", PK_G_DTYPE, SD_DTYPE_I32},
    {"torch", "int16", PK_G_DTYPE, SD_DTYPE_I16},
    {"torch", "int8", PK_G_DTYPE, SD_DTYPE_I8},
    {"torch", "uint8", PK_G_DTYPE, SD_DTYPE_U8},
    {"torch", "bool", PK_G_DTYPE, SD_DTYPE_BOOL},
};

/* Prints a module/name pair for an error message, replacing control bytes. */
static void printable(char *dst, size_t size, const char *src, size_t n) {
  size_t j = 0;
  for (size_t i = 0; i < n && j + 1 < size; i++) dst[j++] = (src[i] >= 32 && src[i] < 127) ? src[i] : '?';
  dst[j] = 0;
}

static int push_global(unpickler *u, const char *module, size_t mlen, const char *name, size_t nlen) {
  for (size_t i = 0; i < sizeof allowlist / sizeof *allowlist; i++) {
    const allowed_global *g = &allowlist[i];
    if (strlen(g->module) == mlen && memcmp(g->module, module, mlen) == 0 && strlen(g->name) == nlen &&
        memcmp(g->name, name, nlen) == 0) {
      pk_value *v = new_value(u, PK_GLOBAL);
      if (!v) return -1;
      v->global = g->kind;
      v->dtype = g->dtype;
      v->s = malloc(mlen + nlen + 2);
      if (!v->s) return sd_fail(u->err, "out of memory while unpickling");
      sprintf(v->s, "%s.%s", g->module, g->name);
      return push(u, v);
    }
  }
  char m[128], n[128];
  printable(m, sizeof m, module, mlen);
  printable(n, sizeof n, name, nlen);
  return sd_fail(u->err, "refusing global '%s.%s' (not on the allowlist for tensor checkpoints); nothing was executed", m,
                 n);
}

static int read_line(unpickler *u, const char **s, size_t *n) {
  const unsigned char *start = u->p + u->pos;
  const unsigned char *nl = memchr(start, '\n', u->len - u->pos);
  if (!nl) return sd_fail(u->err, "truncated pickle: GLOBAL line at byte %zu has no newline", u->pos);
  *s = (const char *)start;
  *n = (size_t)(nl - start);
  u->pos += *n + 1;
  return 0;
}

static int tuple_of_ints(const pk_value *t, int64_t *out, int *n) {
  if (t->kind != PK_TUPLE || t->n > SD_MAX_DIMS) return -1;
  for (int i = 0; i < t->n; i++) {
    if (t->items[i]->kind != PK_INT) return -1;
    out[i] = t->items[i]->i;
  }
  *n = t->n;
  return 0;
}

static int reduce(unpickler *u) {
  pk_value *args = pop(u, "REDUCE"), *fn = args ? pop(u, "REDUCE") : NULL;
  if (!fn) return -1;
  if (fn->kind != PK_GLOBAL || fn->global == PK_G_STORAGE_TYPE || fn->global == PK_G_DTYPE)
    return sd_fail(u->err, "refusing REDUCE at byte %zu on %s (only OrderedDict and torch tensor rebuilds may be called)",
                   u->pos, fn->kind == PK_GLOBAL ? fn->s : "a non-global value");
  if (args->kind != PK_TUPLE) return sd_fail(u->err, "REDUCE at byte %zu: arguments are not a tuple", u->pos);
  if (fn->global == PK_G_ORDERED_DICT) {
    if (args->n != 0) return sd_fail(u->err, "OrderedDict called with arguments at byte %zu (unsupported)", u->pos);
    return push(u, new_value(u, PK_DICT));
  }
  if (fn->global == PK_G_REBUILD_PARAMETER) {
    if (args->n < 1 || args->items[0]->kind != PK_TENSOR)
      return sd_fail(u->err, "_rebuild_parameter at byte %zu: first argument is not a tensor", u->pos);
    return push(u, args->items[0]);
  }
  /* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) */
  if (args->n < 6 || args->n > 7 || args->items[0]->kind != PK_STORAGE || args->items[1]->kind != PK_INT)
    return sd_fail(u->err, "_rebuild_tensor_v2 at byte %zu: expected (storage, offset, size, stride, ...) arguments", u->pos);
  pk_value *t = new_value(u, PK_TENSOR);
  if (!t) return -1;
  int nd_stride = 0;
  t->storage = args->items[0];
  t->offset = args->items[1]->i;
  if (tuple_of_ints(args->items[2], t->size, &t->ndim) || tuple_of_ints(args->items[3], t->stride, &nd_stride) ||
      nd_stride != t->ndim)
    return sd_fail(u->err, "_rebuild_tensor_v2 at byte %zu: size/stride are not matching int tuples of at most %d dims",
                   u->pos, SD_MAX_DIMS);
  return push(u, t);
}

/* BINPERSID: ('storage', storage_type, key, location, numel) -> a storage reference. */
static int persistent_load(unpickler *u) {
  pk_value *pid = pop(u, "BINPERSID");
  if (!pid) return -1;
  if (pid->kind != PK_TUPLE || pid->n < 5 || pid->items[0]->kind != PK_STR || strcmp(pid->items[0]->s, "storage") != 0)
    return sd_fail(u->err, "persistent id at byte %zu is not a ('storage', type, key, location, numel) tuple", u->pos);
  pk_value *type = pid->items[1], *key = pid->items[2], *numel = pid->items[4];
  if (type->kind != PK_GLOBAL || type->global != PK_G_STORAGE_TYPE)
    return sd_fail(u->err, "persistent id at byte %zu: storage type is not a torch storage class", u->pos);
  if (key->kind != PK_STR || key->len == 0 || memchr(key->s, 0, key->len) || strchr(key->s, '/'))
    return sd_fail(u->err, "persistent id at byte %zu: bad storage key", u->pos);
  if (numel->kind != PK_INT || numel->i < 0)
    return sd_fail(u->err, "persistent id at byte %zu: storage size is not a non-negative integer", u->pos);
  pk_value *s = new_value(u, PK_STORAGE);
  if (!s) return -1;
  s->s = key->s; /* owned by the key value, freed with the doc */
  s->dtype = type->dtype;
  s->numel = numel->i;
  return push(u, s);
}

static int build_tuple(unpickler *u, int from) {
  pk_value *t = new_value(u, PK_TUPLE);
  if (!t) return -1;
  for (int i = from; i < u->sp; i++)
    if (add_item(u, t, u->stack[i])) return -1;
  u->sp = from;
  return push(u, t);
}

static int step(unpickler *u, int *stop) {
  const unsigned char *q = need(u, 1);
  if (!q) return -1;
  unsigned char op = *q;
  size_t at = u->pos - 1;
  pk_value *v, *k, *c;
  int from;
  switch (op) {
  case 0x80: /* PROTO */
    if (!(q = need(u, 1))) return -1;
    if (*q > 5) return sd_fail(u->err, "pickle protocol %d is not supported", *q);
    return 0;
  case 0x95: /* FRAME */ return need(u, 8) ? 0 : -1;
  case '.': *stop = 1; return 0;
  case '}': return push(u, new_value(u, PK_DICT));
  case ']': return push(u, new_value(u, PK_LIST));
  case ')': return push(u, new_value(u, PK_TUPLE));
  case 'N': return push(u, new_value(u, PK_NONE));
  case 0x88:
  case 0x89:
    if (!(v = new_value(u, PK_BOOL))) return -1;
    v->i = op == 0x88;
    return push(u, v);
  case '(':
    if (u->n_marks == MAX_MARK_DEPTH) return sd_fail(u->err, "MARKs nested deeper than %d at byte %zu", MAX_MARK_DEPTH, at);
    if (u->n_marks == u->cap_marks) {
      int cap = u->cap_marks ? u->cap_marks * 2 : 64;
      int *m = realloc(u->marks, sizeof *m * (size_t)cap);
      if (!m) return sd_fail(u->err, "out of memory while unpickling");
      u->marks = m;
      u->cap_marks = cap;
    }
    u->marks[u->n_marks++] = u->sp;
    return 0;
  case 't':
    if ((from = pop_mark(u, "TUPLE")) < 0) return -1;
    return build_tuple(u, from);
  case 0x85:
  case 0x86:
  case 0x87:
    if (u->sp - floor_sp(u) < op - 0x84) return sd_fail(u->err, "TUPLE%d at byte %zu: too few values on the stack", op - 0x84, at);
    return build_tuple(u, u->sp - (op - 0x84));
  case 's':
    if (!(v = pop(u, "SETITEM")) || !(k = pop(u, "SETITEM")) || !(c = top(u, "SETITEM"))) return -1;
    return dict_set(u, c, k, v);
  case 'u':
    if ((from = pop_mark(u, "SETITEMS")) < 0) return -1;
    if ((u->sp - from) % 2) return sd_fail(u->err, "SETITEMS at byte %zu: odd number of values", at);
    if (!(c = below_mark(u, from, "SETITEMS"))) return -1;
    for (int i = from; i < u->sp; i += 2)
      if (dict_set(u, c, u->stack[i], u->stack[i + 1])) return -1;
    u->sp = from;
    return 0;
  case 'a':
    if (!(v = pop(u, "APPEND")) || !(c = top(u, "APPEND"))) return -1;
    if (c->kind != PK_LIST) return sd_fail(u->err, "APPEND on a non-list at byte %zu", at);
    return add_item(u, c, v);
  case 'e':
    if ((from = pop_mark(u, "APPENDS")) < 0 || !(c = below_mark(u, from, "APPENDS"))) return -1;
    if (c->kind != PK_LIST) return sd_fail(u->err, "APPENDS on a non-list at byte %zu", at);
    for (int i = from; i < u->sp; i++)
      if (add_item(u, c, u->stack[i])) return -1;
    u->sp = from;
    return 0;
  case 'J': return (q = need(u, 4)) ? push_int(u, (int32_t)(uint32_t)le(q, 4)) : -1;
  case 'K': return (q = need(u, 1)) ? push_int(u, q[0]) : -1;
  case 'M': return (q = need(u, 2)) ? push_int(u, (int64_t)le(q, 2)) : -1;
  case 0x8a: { /* LONG1 */
    if (!(q = need(u, 1))) return -1;
    int n = q[0];
    if (n > 8) return sd_fail(u->err, "LONG1 of %d bytes at byte %zu is too large", n, at);
    if (!(q = need(u, (size_t)n))) return -1;
    uint64_t x = le(q, n);
    if (n > 0 && n < 8 && (q[n - 1] & 0x80)) x |= ~0ull << (8 * n); /* sign-extend */
    return push_int(u, (int64_t)x);
  }
  case 'G': {
    if (!(q = need(u, 8))) return -1;
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++) bits = (bits << 8) | q[i]; /* big-endian */
    if (!(v = new_value(u, PK_FLOAT))) return -1;
    memcpy(&v->f, &bits, 8);
    return push(u, v);
  }
  case 'X':
  case 'B': return (q = need(u, 4)) ? push_str(u, (size_t)le(q, 4)) : -1;
  case 0x8c:
  case 'C': return (q = need(u, 1)) ? push_str(u, q[0]) : -1;
  case 0x8d:
  case 0x8e: {
    if (!(q = need(u, 8))) return -1;
    uint64_t n = le(q, 8);
    if (n > u->len) return sd_fail(u->err, "truncated pickle: string of %llu bytes at byte %zu", (unsigned long long)n, at);
    return push_str(u, (size_t)n);
  }
  case 'q': return (q = need(u, 1)) ? memo_put(u, q[0]) : -1;
  case 'r': return (q = need(u, 4)) ? memo_put(u, (size_t)le(q, 4)) : -1;
  case 0x94: return memo_put(u, u->memo_count);
  case 'h': return (q = need(u, 1)) ? memo_get(u, q[0]) : -1;
  case 'j': return (q = need(u, 4)) ? memo_get(u, (size_t)le(q, 4)) : -1;
  case 'c': {
    const char *m, *n;
    size_t ml, nl;
    if (read_line(u, &m, &ml) || read_line(u, &n, &nl)) return -1;
    return push_global(u, m, ml, n, nl);
  }
  case 0x93: { /* STACK_GLOBAL */
    pk_value *name = pop(u, "STACK_GLOBAL"), *mod = name ? pop(u, "STACK_GLOBAL") : NULL;
    if (!mod) return -1;
    if (mod->kind != PK_STR || name->kind != PK_STR) return sd_fail(u->err, "STACK_GLOBAL at byte %zu: non-string operands", at);
    return push_global(u, mod->s, mod->len, name->s, name->len);
  }
  case 'R': return reduce(u);
  case 0x81: /* NEWOBJ */
  case 0x92: /* NEWOBJ_EX */
  case 'o':  /* OBJ */
  case 'i':  /* INST */
    return sd_fail(u->err, "refusing object construction (opcode 0x%02x) at byte %zu; nothing was executed", op, at);
  case 'b': /* BUILD: state of an OrderedDict (_metadata) or a tensor; ignored */
    if (!(v = pop(u, "BUILD")) || !(c = top(u, "BUILD"))) return -1;
    if (c->kind != PK_DICT && c->kind != PK_TENSOR)
      return sd_fail(u->err, "refusing BUILD at byte %zu on something that is not a dict or tensor", at);
    return 0;
  case 'Q': return persistent_load(u);
  case '0': return pop(u, "POP") ? 0 : -1;
  case '1': return (from = pop_mark(u, "POP_MARK")) < 0 ? -1 : (u->sp = from, 0);
  case '2': return (v = top(u, "DUP")) ? push(u, v) : -1;
  default:
    return sd_fail(u->err, "unsupported pickle opcode 0x%02x ('%c') at byte %zu (not needed for a state dict)", op,
                   op >= 32 && op < 127 ? op : '?', at);
  }
}

int pk_load(const unsigned char *data, size_t len, pk_doc *doc, sd_error *err) {
  memset(doc, 0, sizeof *doc);
  unpickler u = {.p = data, .len = len, .doc = doc, .err = err};
  int stop = 0, rc = 0;
  while (!stop && rc == 0) {
    if (u.pos >= len) {
      rc = sd_fail(err, "truncated pickle: no STOP opcode in %zu bytes", len);
      break;
    }
    rc = step(&u, &stop);
  }
  if (rc == 0) {
    if (u.sp != 1 || u.n_marks) rc = sd_fail(err, "pickle ends with %d values and %d marks on the stack (malformed)", u.sp, u.n_marks);
    else doc->root = u.stack[0];
  }
  free(u.stack);
  free(u.marks);
  free(u.memo);
  if (rc) pk_free(doc);
  return rc;
}

void pk_free(pk_doc *doc) {
  for (int i = 0; i < doc->n_all; i++) {
    pk_value *v = doc->all[i];
    if (v->kind != PK_STORAGE) free(v->s);
    free(v->items);
    free(v);
  }
  free(doc->all);
  memset(doc, 0, sizeof *doc);
}

pk_value *pk_dict_get(const pk_value *d, const char *key) {
  if (!d || d->kind != PK_DICT) return NULL;
  size_t kl = strlen(key);
  for (int i = 0; i + 1 < d->n; i += 2) {
    const pk_value *k = d->items[i];
    if (k->kind == PK_STR && k->len == kl && memcmp(k->s, key, kl) == 0) return d->items[i + 1];
  }
  return NULL;
}
