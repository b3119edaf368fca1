/* state.c: the resumable training state (format 4, docs/trainer.md "Resumable state"):
 * the settings that change a run's result as text, so that a resume can name the one that
 * differs; progress; the final run record once the run has finished; parameters and Adam
 * moments; EfQAT's frozen rows (format 4, when the run is one); and a checksum of everything before it, so that a damaged or edited state is
 * refused instead of resumed into a wrong record. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h"

#define STATE_MAGIC 0x54535451u /* "QTST" */
#define STATE_VERSION 4u
#define STATE_V2_WORDS 8        /* format 2: 8 progress words after the head, no count */
#define STATE_V3_WORDS 10       /* format 3: a count, then this many progress words */
#define STATE_V4_MIN_WORDS 13   /* format 4: three more (FLOPs per phase, EfQAT's bytes) ... */
#define STATE_WORDS 19          /* ... then EfficientQAT's 6 (written: all 19) */
/* magic, version, two lengths, n_floats (24 bytes); format 2: 8 words; format 3: the word
 * count and the words (a later format may append words: a reader takes those it knows) */
#define STATE_PREFIX_V2 (24 + 8 * STATE_V2_WORDS)
#define STATE_PREFIX (32 + 8 * STATE_WORDS)
#define STATE_PREFIX_MAX (32 + 8 * 64)
#define STATE_MAX_TEXT 65536    /* settings and record: far above what they use */

/* ---- checksum ------------------------------------------------------------------------ */

/* FNV-1a over 8-byte words in four interleaved lanes (word i goes to lane i % 4, so the
 * multiplications overlap), then the lanes, the length and a final mix combined: any change
 * to a single word is always detected (each step is a bijection of its lane), and it runs
 * at several GB/s. */
#define FNV_PRIME 0x100000001b3ull

void state_hash_init(state_hash *x)
{
    for (int i = 0; i < 4; i++) x->h[i] = 0xcbf29ce484222325ull + (uint64_t)i;
    x->n = 0;
    x->nt = 0;
}

static void hash_block(state_hash *x, const unsigned char *b)
{
    uint64_t w[4];
    memcpy(w, b, 32);
    for (int i = 0; i < 4; i++) x->h[i] = (x->h[i] ^ w[i]) * FNV_PRIME;
}

void state_hash_update(state_hash *x, const void *data, size_t n)
{
    const unsigned char *b = data;
    x->n += n;
    while (n && x->nt) {
        x->tail[x->nt++] = *b++;
        n--;
        if (x->nt == 32) {
            hash_block(x, x->tail);
            x->nt = 0;
        }
    }
    for (; n >= 32; b += 32, n -= 32) hash_block(x, b);
    while (n--) x->tail[x->nt++] = *b++;
}

uint64_t state_hash_final(state_hash *x)
{
    if (x->nt) {
        memset(x->tail + x->nt, 0, 32 - x->nt);
        hash_block(x, x->tail);
    }
    uint64_t h = x->h[0];
    for (int i = 1; i < 4; i++) h = (h ^ x->h[i]) * FNV_PRIME;
    h ^= x->n; /* the length: zero padding must not collide */
    h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdull;
    h = (h ^ (h >> 33)) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

static uint64_t hash_tokens(const uint16_t *t, uint64_t n)
{
    state_hash x;
    state_hash_init(&x);
    state_hash_update(&x, t, (size_t)n * sizeof *t);
    return state_hash_final(&x);
}

/* ---- settings ------------------------------------------------------------------------- */

/* The shortest %g that reads back as the same double: 0.003, not 0.0030000000000000001. */
static void fmt_real(char *buf, size_t n, double v)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

static void add_line(char *buf, size_t n, size_t *at, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void add_line(char *buf, size_t n, size_t *at, const char *key, const char *fmt, ...)
{
    if (*at >= n) return;
    int k = snprintf(buf + *at, n - *at, "%s ", key);
    if (k > 0) *at += (size_t)k;
    if (*at >= n) return;
    va_list ap;
    va_start(ap, fmt);
    k = vsnprintf(buf + *at, n - *at, fmt, ap);
    va_end(ap);
    if (k > 0) *at += (size_t)k;
    if (*at < n - 1) buf[(*at)++] = '\n', buf[*at] = '\0';
}

static void add_real(char *buf, size_t n, size_t *at, const char *key, double v)
{
    char r[40];
    fmt_real(r, sizeof r, v);
    add_line(buf, n, at, key, "%s", r);
}

void state_settings(char *buf, size_t n, const train_config *c, const train_sched *s, long n_eval,
                    const train_data *d, const char *init_id)
{
    size_t at = 0;
    buf[0] = '\0';
    char id[96];
    snprintf(id, sizeof id, "%s", c->run_id ? c->run_id : "");
    for (char *p = id; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' '; /* one line per setting */
    add_line(buf, n, &at, "run-id", "%s", id); /* a label: not compared */
    const train_shape *sh = &c->shape;
    add_line(buf, n, &at, "vocabulary", "%d", sh->vocab);
    add_line(buf, n, &at, "--layers", "%d", sh->n_layer);
    add_line(buf, n, &at, "--width", "%d", sh->d_model);
    add_line(buf, n, &at, "--heads", "%d", sh->n_head);
    add_line(buf, n, &at, "--kv-heads", "%d", sh->n_kv_head);
    add_line(buf, n, &at, "--ffn", "%d", sh->d_ff);
    add_line(buf, n, &at, "--context", "%d", sh->context);
    add_line(buf, n, &at, "--bits", "%d", c->quant.bits);
    add_line(buf, n, &at, "--quantizer", "%s", train_quantizer_name(c->quant.kind));
    add_line(buf, n, &at, "--group-size", "%d", c->quant.group_size);
    add_line(buf, n, &at, "--embed-bits", "%d", c->quant.embed_bits);
    add_line(buf, n, &at, "--batch", "%d", c->batch);
    add_real(buf, n, &at, "--tokens", c->tokens);
    add_real(buf, n, &at, "--qat-fraction", c->qat_fraction);
    add_line(buf, n, &at, "--schedule", "%s", data_schedule_name(s->schedule));
    add_real(buf, n, &at, "--lr", c->lr);
    /* newer settings only when they change the run: a state saved before they existed has
     * their defaults, and resumes */
    if (s->lr_qat != s->lr) add_real(buf, n, &at, "--qat-lr", s->lr_qat);
    if (c->qparam_lr_mult != 1.0) add_real(buf, n, &at, "--qparam-lr-mult", c->qparam_lr_mult);
    if (init_id) add_line(buf, n, &at, "--init", "%s", init_id);
    if (c->method != TRAIN_METHOD_QAT) {
        add_line(buf, n, &at, "--method", "%s", train_method_name(c->method));
        if (c->method == TRAIN_METHOD_EFQAT) {
            add_real(buf, n, &at, "--unfrozen", c->unfrozen);
            add_line(buf, n, &at, "--efqat-mode", "%s", train_efqat_mode_name(c->efqat_mode));
            if (c->efqat_mode != TRAIN_EFQAT_CWPL) add_line(buf, n, &at, "--refresh", "%ld", c->refresh_steps);
        } else {
            const train_eq_config *q = &c->eq;
            add_real(buf, n, &at, "--blockap-tokens", q->blockap_tokens);
            add_line(buf, n, &at, "--blockap-epochs", "%d", q->blockap_epochs);
            add_real(buf, n, &at, "--blockap-share", q->blockap_share);
            add_real(buf, n, &at, "--blockap-weight-lr", q->blockap_weight_lr);
            add_real(buf, n, &at, "--blockap-qparam-lr", q->blockap_qparam_lr);
            add_real(buf, n, &at, "--blockap-min-lr-factor", q->blockap_min_lr_factor);
            add_real(buf, n, &at, "--blockap-val-tokens", q->blockap_val_tokens);
            add_real(buf, n, &at, "--e2e-tokens", q->e2e_tokens);
            add_real(buf, n, &at, "--e2e-lr", q->e2e_lr);
            add_real(buf, n, &at, "--e2e-warmup-frac", q->e2e_warmup_frac);
            add_real(buf, n, &at, "--e2e-grad-clip", q->e2e_grad_clip);
        }
    }
    add_real(buf, n, &at, "--warmup-frac", c->warmup_frac);
    if (c->warmup_tokens > 0) add_real(buf, n, &at, "--warmup-tokens", c->warmup_tokens);
    add_real(buf, n, &at, "--decay-frac", s->decay_frac);
    add_line(buf, n, &at, "--decay-shape", "%s", c->decay_sqrt ? "1-sqrt" : "linear");
    add_real(buf, n, &at, "--min-lr-frac", c->min_lr_frac);
    add_real(buf, n, &at, "--weight-decay", c->weight_decay);
    add_real(buf, n, &at, "--grad-clip", c->grad_clip);
    add_line(buf, n, &at, "--reset-optimizer", "%s", c->reset_optimizer ? "yes" : "no");
    add_real(buf, n, &at, "--diverge-loss",
             c->diverge_loss > 0 ? c->diverge_loss : 3.0 * log((double)sh->vocab) + 5.0);
    char b1[40], b2[40], ep[40];
    fmt_real(b1, sizeof b1, c->beta1);
    fmt_real(b2, sizeof b2, c->beta2);
    fmt_real(ep, sizeof ep, c->adam_eps);
    add_line(buf, n, &at, "adam-betas-eps", "%s %s %s", b1, b2, ep);
    add_line(buf, n, &at, "--seed", "%llu", (unsigned long long)c->seed);
    add_line(buf, n, &at, "--precision", "%s", train_precision_name(c->precision));
    add_line(buf, n, &at, "--eval-tokens", "%ld (validation windows of %d)", n_eval * sh->context,
             sh->context);
    add_line(buf, n, &at, "training-data", "%llu tokens, hash %016llx", (unsigned long long)d->n_train,
             (unsigned long long)hash_tokens(d->train, d->n_train));
    add_line(buf, n, &at, "validation-data", "%llu tokens, hash %016llx", (unsigned long long)d->n_val,
             (unsigned long long)hash_tokens(d->val, d->n_val));
}

/* The value of `key` in settings text (pointer to it and its length), or NULL. */
static const char *find_key(const char *text, const char *key, size_t *len)
{
    size_t kl = strlen(key);
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        if (ll > kl && !strncmp(p, key, kl) && p[kl] == ' ') {
            *len = ll - kl - 1;
            return p + kl + 1;
        }
        p = eol ? eol + 1 : NULL;
    }
    return NULL;
}

/* A setting the state has and this run has not (both ways round, settings that are written
 * only when not at their default must be compared). */
static qp_status extra_setting(const char *path, const char *saved, const char *want, qp_error *err)
{
    for (const char *p = saved; *p;) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p), vl = 0;
        const char *sp = memchr(p, ' ', ll);
        if (sp) {
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(sp - p), p);
            if (!find_key(want, key, &vl))
                return qp_fail(err, QP_ERR_INPUT,
                               "%s: %s differs: the state has %.*s, this run none; resume with the same "
                               "settings, or delete the state to start again",
                               path, key, (int)(ll - (size_t)(sp + 1 - p) > 200 ? 200 : ll - (size_t)(sp + 1 - p)),
                               sp + 1);
        }
        p = eol ? eol + 1 : p + ll;
    }
    return QP_OK;
}

/* QP_OK when every setting of `want` has the same value in `saved` and the other way round;
 * else names the first one that differs with both values. */
static qp_status compare_settings(const char *path, const char *saved, const char *want, qp_error *err)
{
    for (const char *p = want; *p;) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        const char *sp = memchr(p, ' ', ll);
        if (sp) {
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(sp - p), p);
            const char *v = sp + 1;
            size_t vl = ll - (size_t)(v - p), sl = 0;
            const char *sv = find_key(saved, key, &sl);
            if (strcmp(key, "run-id") && (!sv || sl != vl || memcmp(sv, v, vl)))
                return qp_fail(err, QP_ERR_INPUT,
                               "%s: %s differs: the state has %.*s, this run %.*s; resume with the "
                               "same settings, or delete the state to start again",
                               path, key, sv ? (int)(sl > 200 ? 200 : sl) : 4, sv ? sv : "none",
                               (int)(vl > 200 ? 200 : vl), v);
        }
        p = eol ? eol + 1 : p + ll;
    }
    return extra_setting(path, saved, want, err);
}

/* ---- writing and reading ---------------------------------------------------------------- */

static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint64_t get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static uint64_t dbits(double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    return v;
}
static double bitsd(uint64_t v)
{
    double d;
    memcpy(&d, &v, 8);
    return d;
}

static void put_prefix(unsigned char *b, uint32_t sl, uint32_t rl, uint64_t nf, const train_progress *pr,
                       uint64_t eb)
{
    uint32_t head[4] = {STATE_MAGIC, STATE_VERSION, sl, rl};
    memcpy(b, head, sizeof head);
    put64(b + 16, nf);
    uint64_t w[STATE_WORDS] = {(uint64_t)pr->step, (uint64_t)pr->adam_t, pr->rng, (uint64_t)pr->switched,
                               (uint64_t)pr->finished, dbits(pr->loss_fp_switch), dbits(pr->wall_seconds),
                               dbits(pr->train_loss), dbits(pr->loss_ptq), dbits(pr->wall_switch),
                               dbits(pr->flops_fp), dbits(pr->flops_qat), eb,
                               (uint64_t)pr->eq_stage, (uint64_t)pr->blockap_blocks, (uint64_t)pr->e2e_step,
                               dbits(pr->blockap_mse), dbits(pr->flops_blockap), dbits(pr->flops_e2eqp)};
    put64(b + 24, STATE_WORDS);
    for (int i = 0; i < STATE_WORDS; i++) put64(b + 32 + 8 * i, w[i]);
}

/* The progress words at w (nw of them): format 2 has the first 8. */
static void get_progress(const unsigned char *w, size_t nw, train_progress *pr)
{
    pr->step = (int64_t)get64(w);
    pr->adam_t = (int64_t)get64(w + 8);
    pr->rng = get64(w + 16);
    pr->switched = (int64_t)get64(w + 24);
    pr->finished = (int64_t)get64(w + 32);
    pr->loss_fp_switch = bitsd(get64(w + 40));
    pr->wall_seconds = bitsd(get64(w + 48));
    pr->train_loss = bitsd(get64(w + 56));
    pr->loss_ptq = nw > 8 ? bitsd(get64(w + 64)) : NAN;
    pr->wall_switch = nw > 9 ? bitsd(get64(w + 72)) : NAN;
    pr->flops_fp = nw > 10 ? bitsd(get64(w + 80)) : NAN;
    pr->flops_qat = nw > 11 ? bitsd(get64(w + 88)) : NAN;
    pr->eq_stage = nw > 13 ? (int64_t)get64(w + 104) : 0;
    pr->blockap_blocks = nw > 14 ? (int64_t)get64(w + 112) : 0;
    pr->e2e_step = nw > 15 ? (int64_t)get64(w + 120) : 0;
    pr->blockap_mse = nw > 16 ? bitsd(get64(w + 128)) : 0;
    pr->flops_blockap = nw > 17 ? bitsd(get64(w + 136)) : 0;
    pr->flops_e2eqp = nw > 18 ? bitsd(get64(w + 144)) : 0;
}

/* Bytes of EfQAT's section after the moments (progress word 12; none before format 4). */
static uint64_t efq_bytes_of(const unsigned char *w, size_t nw) { return nw > 12 ? get64(w + 96) : 0; }

qp_status state_save(const char *path, const char *settings, const model *m, const train_progress *pr,
                     const char *record, qp_error *err)
{
    size_t sl = strlen(settings), rl = record ? strlen(record) : 0, fl = m->n_floats * sizeof(float);
    if (sl > STATE_MAX_TEXT || rl > STATE_MAX_TEXT)
        return qp_fail(err, QP_ERR_INPUT, "%s: the settings or the run record are too long for a state", path);
    /* written in parts from the model's own buffers (no copy of the parameters and moments:
     * E2E-QP's lean layout would need three times its memory for one); moments outside the
     * layout's range (model_moment) are zeros */
    size_t eb = efqat_state_bytes(m), head = STATE_PREFIX + sl + rl;
    size_t lo = m->fam_lo * sizeof(float), fam = (m->fam_hi - m->fam_lo) * sizeof(float), hi = fl - lo - fam;
    unsigned char *buf = malloc(head + eb + 8);
    if (!buf) return qp_fail(err, QP_ERR_NOMEM, "out of memory saving the state to %s", path);
    put_prefix(buf, (uint32_t)sl, (uint32_t)rl, m->n_floats, pr, eb);
    memcpy(buf + STATE_PREFIX, settings, sl);
    if (rl) memcpy(buf + STATE_PREFIX + sl, record, rl);
    unsigned char *tail = buf + head;
    if (eb) efqat_state_write(m, tail);
    qp_part parts[] = {{buf, head},   {m->params_mem, fl}, {NULL, lo}, {m->m_mem, fam}, {NULL, hi},
                       {NULL, lo},    {m->v_mem, fam},     {NULL, hi}, {tail, eb},      {tail + eb, 8}};
    size_t np = sizeof parts / sizeof parts[0];
    static const unsigned char zeros[4096];
    state_hash x;
    state_hash_init(&x);
    for (size_t i = 0; i + 1 < np; i++) {
        if (parts[i].data) {
            state_hash_update(&x, parts[i].data, parts[i].len);
            continue;
        }
        for (size_t left = parts[i].len; left;) {
            size_t k = left < sizeof zeros ? left : sizeof zeros;
            state_hash_update(&x, zeros, k);
            left -= k;
        }
    }
    put64(tail + eb, state_hash_final(&x));
    qp_status st = qp_write_file_atomic_parts(path, parts, np, err);
    free(buf);
    return st;
}

/* Read n bytes into dst (or into a bounce buffer when dst is NULL), adding them to the hash. */
static qp_status read_hashed(FILE *f, void *dst, size_t n, state_hash *x, const char *path, qp_error *err)
{
    unsigned char bounce[65536];
    unsigned char *d = dst;
    while (n) {
        size_t k = d ? n : (n < sizeof bounce ? n : sizeof bounce);
        size_t r = fread(d ? d : bounce, 1, k, f);
        if (r == 0)
            return qp_fail(err, QP_ERR_IO, "%s: read error%s", path, ferror(f) ? "" : " (file shrank?)");
        state_hash_update(x, d ? d : bounce, r);
        if (d) d += r;
        n -= r;
    }
    return QP_OK;
}

/* The head (the first 32 bytes): format, lengths and the prefix size *pl; formats 2 and 3. */
static qp_status check_head(const char *path, const unsigned char *b, size_t *pl, qp_error *err)
{
    uint32_t head[4];
    memcpy(head, b, sizeof head);
    if (head[0] != STATE_MAGIC)
        return qp_fail(err, QP_ERR_PARSE, "%s: not a qatplan training state; check --state (it "
                                          "names the file a run saves its state to)", path);
    if (head[1] != STATE_VERSION && head[1] != 3 && head[1] != 2)
        return qp_fail(err, QP_ERR_PARSE, "%s: a training state of format %u, and this qatplan reads "
                                          "formats 2 to %u%s; delete it and start the run again (or "
                                          "finish it with the qatplan that saved it)",
                       path, head[1], STATE_VERSION, head[1] < 2 ? " (saved by an older qatplan)" : "");
    uint64_t nw = head[1] == 2 ? STATE_V2_WORDS : get64(b + 24);
    if (head[1] != 2 && (nw < (head[1] == 3 ? STATE_V3_WORDS : STATE_V4_MIN_WORDS) || nw > (STATE_PREFIX_MAX - 32) / 8))
        return qp_fail(err, QP_ERR_PARSE, "%s: damaged header (%llu progress words); delete it and "
                                          "start again", path, (unsigned long long)nw);
    *pl = head[1] == 2 ? STATE_PREFIX_V2 : 32 + 8 * (size_t)nw;
    return QP_OK;
}

static qp_status check_prefix(const char *path, const unsigned char *b, size_t pl, size_t size, size_t *sl,
                              size_t *rl, uint64_t *nf, uint64_t *eb, qp_error *err)
{
    uint32_t head[4];
    memcpy(head, b, sizeof head);
    *sl = head[2];
    *rl = head[3];
    *nf = get64(b + 16);
    *eb = head[1] == 2 ? 0 : efq_bytes_of(b + 32, (pl - 32) / 8);
    if (*sl > STATE_MAX_TEXT || *rl > STATE_MAX_TEXT || *nf > (1ull << 40) || *eb > (1ull << 42) ||
        size != pl + *sl + *rl + 3 * 4 * *nf + *eb + 8)
        return qp_fail(err, QP_ERR_PARSE, "%s: %zu bytes, which does not match its header (truncated or "
                                          "damaged); delete it and start again", path, size);
    return QP_OK;
}

qp_status state_load(const char *path, const char *settings, model *m, train_progress *pr,
                     char **record, char *run_id, size_t n_run_id, qp_error *err)
{
    *record = NULL;
    run_id[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) return qp_fail(err, QP_ERR_IO, "%s: cannot open the state: %s", path, strerror(errno));
    struct stat sb;
    unsigned char pre[STATE_PREFIX_MAX];
    char *text = NULL;
    qp_status st = QP_OK;
    size_t sl = 0, rl = 0, pl = 0;
    uint64_t nf = 0, eb = 0;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode))
        st = qp_fail(err, QP_ERR_INPUT, "%s: not a regular file; check --state", path);
    else if ((size_t)sb.st_size < STATE_PREFIX_V2 + 8 || fread(pre, 1, 32, f) != 32)
        st = qp_fail(err, QP_ERR_PARSE, "%s: too short to be a qatplan training state (truncated?); "
                                        "delete it and start again", path);
    else if (!(st = check_head(path, pre, &pl, err)) &&
             ((size_t)sb.st_size < pl + 8 || fread(pre + 32, 1, pl - 32, f) != pl - 32))
        st = qp_fail(err, QP_ERR_PARSE, "%s: too short to be a qatplan training state (truncated?); "
                                        "delete it and start again", path);
    if (!st) st = check_prefix(path, pre, pl, (size_t)sb.st_size, &sl, &rl, &nf, &eb, err);
    state_hash x;
    state_hash_init(&x);
    state_hash_update(&x, pre, pl);
    if (!st && !(text = malloc(sl + rl + 2))) st = qp_fail(err, QP_ERR_NOMEM, "out of memory");
    if (!st) st = read_hashed(f, text, sl + rl, &x, path, err);
    /* straight into the model when the sizes agree; otherwise only to check the file (the
     * settings below then name the difference) */
    int fits = nf == m->n_floats;
    if (!st) st = read_hashed(f, fits ? m->params_mem : NULL, nf * 4, &x, path, err);
    /* the moments: the layout's range of each (all of it but in E2E-QP's lean layout, whose
     * states hold zeros elsewhere) */
    size_t lo = fits ? m->fam_lo : nf, fam = fits ? m->fam_hi - m->fam_lo : 0;
    float *mv[2] = {m->m_mem, m->v_mem};
    for (int i = 0; i < 2 && !st; i++) {
        st = read_hashed(f, NULL, lo * 4, &x, path, err);
        if (!st) st = read_hashed(f, mv[i], fam * 4, &x, path, err);
        if (!st) st = read_hashed(f, NULL, (nf - lo - fam) * 4, &x, path, err);
    }
    /* EfQAT's section: kept aside until the settings agree (they fix its size) */
    unsigned char *efq = NULL;
    if (!st && eb && !(efq = malloc(eb))) st = qp_fail(err, QP_ERR_NOMEM, "out of memory");
    if (!st && eb) st = read_hashed(f, efq, eb, &x, path, err);
    unsigned char sum[8];
    if (!st && fread(sum, 1, 8, f) != 8) st = qp_fail(err, QP_ERR_IO, "%s: read error", path);
    if (!st && get64(sum) != state_hash_final(&x))
        st = qp_fail(err, QP_ERR_CHECKSUM, "%s: checksum mismatch: the state is damaged or was edited; "
                                           "delete it and start again", path);
    fclose(f);
    if (!st) {
        char *rec = text + sl + 1;
        memmove(rec, text + sl, rl);
        rec[rl] = '\0';
        text[sl] = '\0';
        if (settings) st = compare_settings(path, text, settings, err); /* NULL: a trunk's, checked by the caller */
        if (!st && !fits)
            st = qp_fail(err, QP_ERR_INPUT, "%s: saved for a model of %llu parameters, this one has %zu; "
                                            "delete the state to start again", path,
                         (unsigned long long)nf, m->n_floats);
        if (!st && eb != efqat_state_bytes(m))
            st = qp_fail(err, QP_ERR_INPUT, "%s: its EfQAT section (%llu bytes) does not fit this run (%zu); "
                                            "delete the state to start again", path, (unsigned long long)eb,
                         efqat_state_bytes(m));
        if (!st && eb) efqat_state_read(m, efq);
        if (!st) {
            size_t vl = 0;
            const char *v = find_key(text, "run-id", &vl);
            if (v) snprintf(run_id, n_run_id, "%.*s", (int)vl, v);
            uint32_t ver;
            memcpy(&ver, pre + 4, 4);
            get_progress(ver == 2 ? pre + 24 : pre + 32, (pl - (ver == 2 ? 24 : 32)) / 8, pr);
            if (rl && !(*record = strdup(rec))) st = qp_fail(err, QP_ERR_NOMEM, "out of memory");
        }
    }
    free(text);
    free(efq);
    return st;
}

qp_status state_peek(const char *path, char **settings, train_progress *pr, uint64_t *n_floats, uint64_t *checksum,
                     qp_error *err)
{
    *settings = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return qp_fail(err, QP_ERR_IO, "%s: cannot open the state: %s", path, strerror(errno));
    struct stat sb;
    unsigned char pre[STATE_PREFIX_MAX], sum[8];
    size_t sl = 0, rl = 0, pl = 0;
    qp_status st = QP_OK;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode) || (size_t)sb.st_size < STATE_PREFIX_V2 + 8 ||
        fread(pre, 1, 32, f) != 32)
        st = qp_fail(err, QP_ERR_PARSE, "%s: not a qatplan training state (too short)", path);
    else if (!(st = check_head(path, pre, &pl, err)) && fread(pre + 32, 1, pl - 32, f) != pl - 32)
        st = qp_fail(err, QP_ERR_PARSE, "%s: truncated training state", path);
    uint64_t eb = 0; /* EfQAT's section: a trunk's copy has none (trunks train full QAT) */
    if (!st) st = check_prefix(path, pre, pl, (size_t)sb.st_size, &sl, &rl, n_floats, &eb, err);
    if (!st && !(*settings = malloc(sl + 1))) st = qp_fail(err, QP_ERR_NOMEM, "out of memory");
    if (!st && fread(*settings, 1, sl, f) != sl) st = qp_fail(err, QP_ERR_IO, "%s: read error", path);
    if (!st && (fseek(f, -8, SEEK_END) != 0 || fread(sum, 1, 8, f) != 8))
        st = qp_fail(err, QP_ERR_IO, "%s: read error", path);
    fclose(f);
    if (st) {
        free(*settings);
        *settings = NULL;
        return st;
    }
    (*settings)[sl] = '\0';
    uint32_t ver;
    memcpy(&ver, pre + 4, 4);
    get_progress(ver == 2 ? pre + 24 : pre + 32, (pl - (ver == 2 ? 24 : 32)) / 8, pr);
    *checksum = get64(sum);
    return QP_OK;
}
