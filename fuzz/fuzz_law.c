/* fuzz_law: law files, data_law_parse (data/law_file.c). An accepted law must write back
 * (data_law_to_json) and read again to the same coefficients, intervals and bootstrap
 * samples, bit for bit: a law qatplan accepts is one it can save. */
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "fuzz_util.h"

static void same(const char *what, int i, double a, double b)
{
    if (memcmp(&a, &b, sizeof a)) fz_fail("law round trip changed %s[%d]: %.17g -> %.17g", what, i, a, b);
}

static void round_trip(const data_law *law)
{
    qp_error e = {0};
    char *text = data_law_to_json(law, &e);
    if (!text) fz_fail("an accepted law does not write back: %s", e.msg);
    data_law back;
    if (data_law_parse(text, "written", &back, &e))
        fz_fail("a written law does not read back: %s\n%s", e.msg, text);
    if (back.form != law->form || back.has_interval != law->has_interval || back.n_samples != law->n_samples)
        fz_fail("law round trip changed the form, intervals or sample count");
    int n = data_law_ncoef(law->form);
    for (int i = 0; i < n; i++) {
        same("coef", i, law->coef[i], back.coef[i]);
        if (law->has_interval) {
            same("ci_lo", i, law->ci_lo[i], back.ci_lo[i]);
            same("ci_hi", i, law->ci_hi[i], back.ci_hi[i]);
        }
    }
    for (long k = 0; k < (long)law->n_samples * n; k++) same("samples", (int)k, law->samples[k], back.samples[k]);
    if (back.prov.n_runs != law->prov.n_runs || back.prov.n_excluded != law->prov.n_excluded)
        fz_fail("law round trip changed the run counts");
    if (strcmp(back.prov.source, law->prov.source)) fz_fail("law round trip changed the source");
    data_law_free(&back);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fz_cstr(data, size);
    data_law law;
    qp_error e = {0};
    if (!data_law_parse(text, "fuzz.law.json", &law, &e)) {
        round_trip(&law);
        data_law_free(&law);
    } else if (!e.msg[0]) {
        fz_fail("a refused law file has no message");
    }
    free(text);
    return 0;
}
