/*
 * civic._speedups: optional C versions of the strict decoders on the verification hot path.
 *
 * Each function here has a pure-Python reference that defines its behaviour, and tests check
 * the two give the same value, or the same error with the same reason code and detail, for
 * every input (tests/unit/test_speedups.py):
 *
 *   b64url_decode      civic.encoding.b64url_decode_py      (RFC 7515 section 2, canonical only)
 *   json_loads         civic.encoding.json_loads_py         (RFC 8259, strict; see that module)
 *   parse_disclosures  civic.sdjwt.parse_disclosures_py     (RFC 9901 section 4.2)
 *   resolve_disclosures civic.sdjwt.resolve_disclosures_py  (RFC 9901 section 7.1 step 3)
 *
 * Why C: an SD-JWT VC presentation with six disclosures takes eleven base64url decodes and
 * nine JSON parses, and in Python their call overhead costs about as much as one of the two
 * Ed25519 signature checks. The JSON scanner follows CPython's Modules/_json.c step for step
 * (the same grammar, the same points of failure), adding what the Python wrapper adds after
 * it: duplicate member names, non-standard constants, infinite numbers, unpaired surrogates
 * and the nesting bound. Errors are raised as civic.errors.MalformedError, registered by
 * configure() and configure_disclosures() at import time.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

/* Set at import by configure() and configure_disclosures(): the error class, reason codes,
 * SHA-256, the Disclosure tuple type and the reserved claim names, so that this module and
 * the Python reference share one definition of each. */
static PyObject *MalformedError = NULL, *VerificationError = NULL;
static PyObject *R_MALFORMED_BASE64, *R_MALFORMED_JSON, *R_MALFORMED_UTF8,
    *R_DUPLICATE_JSON_MEMBER, *R_NUMBER_OUT_OF_RANGE, *R_NESTING_TOO_DEEP,
    *R_MALFORMED_DISCLOSURE, *R_RESERVED_CLAIM_NAME, *R_MALFORMED_SD_JWT,
    *R_DISCLOSURE_DUPLICATE, *R_DIGEST_DUPLICATE, *R_CLAIM_NAME_COLLISION;
static PyObject *SdKey = NULL, *EllipsisKey = NULL;
static PyTypeObject *DisclosureType = NULL;
static PyObject *ReservedNames = NULL;
static PyObject *Sha256 = NULL;
static PyObject *DetailAttr = NULL;

static const char B64URL_CHARS[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static signed char B64URL_VALUE[256];

static int
configured(void)
{
    if (MalformedError == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "civic._speedups.configure() was not called");
        return 0;
    }
    return 1;
}

static void
raise_error_obj(PyObject *error, PyObject *reason, PyObject *detail)
{
    PyObject *exc = PyObject_CallFunctionObjArgs(error, reason, detail, NULL);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

static void
raise_malformed_obj(PyObject *reason, PyObject *detail)
{
    raise_error_obj(MalformedError, reason, detail);
}

static void
raise_error(PyObject *error, PyObject *reason, const char *detail)
{
    PyObject *text = PyUnicode_FromString(detail);
    if (text != NULL) {
        raise_error_obj(error, reason, text);
        Py_DECREF(text);
    }
}

static void
raise_malformed(PyObject *reason, const char *detail)
{
    raise_error(MalformedError, reason, detail);
}

/* ---- base64url ------------------------------------------------------------------------- */

/* Decodes n characters of unpadded base64url into a new bytes object. The checks and their
 * order are those of b64url_decode_py: length, alphabet, canonical tail. */
static PyObject *
b64url_decode_chars(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t rem = n % 4, i, o = 0;
    if (rem == 1) {
        raise_malformed(R_MALFORMED_BASE64, "impossible base64url length");
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (B64URL_VALUE[s[i]] < 0) {
            raise_malformed(R_MALFORMED_BASE64, "character outside base64url alphabet");
            return NULL;
        }
    }
    /* The last character carries 4 (rem 2) or 2 (rem 3) unused low bits that must be zero. */
    if (rem && (B64URL_VALUE[s[n - 1]] & (rem == 2 ? 0x0F : 0x03))) {
        raise_malformed(R_MALFORMED_BASE64, "non-canonical base64url");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n / 4 * 3 + (rem ? rem - 1 : 0));
    if (out == NULL) {
        return NULL;
    }
    unsigned char *d = (unsigned char *)PyBytes_AS_STRING(out);
    for (i = 0; i + 4 <= n; i += 4) {
        unsigned int v = ((unsigned int)B64URL_VALUE[s[i]] << 18) |
                         ((unsigned int)B64URL_VALUE[s[i + 1]] << 12) |
                         ((unsigned int)B64URL_VALUE[s[i + 2]] << 6) |
                         (unsigned int)B64URL_VALUE[s[i + 3]];
        d[o++] = (unsigned char)(v >> 16);
        d[o++] = (unsigned char)(v >> 8);
        d[o++] = (unsigned char)v;
    }
    if (rem) {
        unsigned int v = ((unsigned int)B64URL_VALUE[s[i]] << 18) |
                         ((unsigned int)B64URL_VALUE[s[i + 1]] << 12);
        if (rem == 3) {
            v |= (unsigned int)B64URL_VALUE[s[i + 2]] << 6;
        }
        d[o++] = (unsigned char)(v >> 16);
        if (rem == 3) {
            d[o++] = (unsigned char)(v >> 8);
        }
    }
    return out;
}

/* A str (ASCII only) or bytes argument as a character buffer; NULL with the error set. */
static const unsigned char *
b64url_input(PyObject *arg, Py_ssize_t *n)
{
    if (PyUnicode_Check(arg)) {
        if (PyUnicode_READY(arg) < 0) {
            return NULL;
        }
        if (!PyUnicode_IS_ASCII(arg)) {
            raise_malformed(R_MALFORMED_BASE64, "non-ASCII base64url");
            return NULL;
        }
        *n = PyUnicode_GET_LENGTH(arg);
        return (const unsigned char *)PyUnicode_1BYTE_DATA(arg);
    }
    if (PyBytes_Check(arg)) {
        *n = PyBytes_GET_SIZE(arg);
        return (const unsigned char *)PyBytes_AS_STRING(arg);
    }
    PyErr_SetString(PyExc_TypeError, "b64url_decode() takes str or bytes");
    return NULL;
}

static PyObject *
speedups_b64url_decode(PyObject *module, PyObject *arg)
{
    Py_ssize_t n;
    if (!configured()) {
        return NULL;
    }
    const unsigned char *s = b64url_input(arg, &n);
    return s == NULL ? NULL : b64url_decode_chars(s, n);
}

/* ---- strict JSON ------------------------------------------------------------------------ */

typedef struct {
    PyObject *text;
    int kind;
    const void *data;
    Py_ssize_t end_idx; /* index of the last character, as in Modules/_json.c */
    int max_depth;
    int depth;
    int surrogate; /* a string holds a surrogate code point: reported after the scan */
} Scanner;

/* The deepest max_depth a caller may ask for (civic.encoding.MAX_JSON_DEPTH_LIMIT). */
#define MAX_DEPTH_LIMIT 512

#define READ(sc, i) PyUnicode_READ((sc)->kind, (sc)->data, (i))
#define IS_WS(c) ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define IS_SURROGATE(c) ((c) >= 0xD800 && (c) <= 0xDFFF)

static PyObject *scan_value(Scanner *sc, Py_ssize_t idx, Py_ssize_t *next);

static void
invalid_json(void)
{
    raise_malformed(R_MALFORMED_JSON, "invalid JSON");
}

static int
hex_value(Py_UCS4 c)
{
    if (c >= '0' && c <= '9') {
        return (int)(c - '0');
    }
    if (c >= 'a' && c <= 'f') {
        return (int)(c - 'a' + 10);
    }
    if (c >= 'A' && c <= 'F') {
        return (int)(c - 'A' + 10);
    }
    return -1;
}

/* The string whose opening quote is at start - 1 (scanstring_unicode, strict). */
static PyObject *
scan_string(Scanner *sc, Py_ssize_t start, Py_ssize_t *next)
{
    Py_ssize_t len = sc->end_idx + 1, i = start;
    Py_UCS4 c = 0;
    int check_surrogates = sc->kind != PyUnicode_1BYTE_KIND;
    /* Fast path: no escape before the closing quote. */
    while (i < len) {
        c = READ(sc, i);
        if (c == '"' || c == '\\' || c <= 0x1F) {
            break;
        }
        if (check_surrogates && IS_SURROGATE(c)) {
            sc->surrogate = 1;
        }
        i++;
    }
    if (i >= len || c <= 0x1F) {
        invalid_json(); /* unterminated string, or a control character in it */
        return NULL;
    }
    if (c == '"') {
        *next = i + 1;
        return PyUnicode_Substring(sc->text, start, i);
    }
    /* Slow path: escapes. The result is never longer than the rest of the input. */
    Py_UCS4 *buf = PyMem_Malloc(sizeof(Py_UCS4) * (size_t)(len - start));
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t n = 0, j;
    for (j = start; j < i; j++) {
        buf[n++] = READ(sc, j);
    }
    for (;;) {
        if (i >= len) {
            goto invalid;
        }
        c = READ(sc, i);
        if (c == '"') {
            break;
        }
        if (c <= 0x1F) {
            goto invalid;
        }
        if (c != '\\') {
            if (check_surrogates && IS_SURROGATE(c)) {
                sc->surrogate = 1;
            }
            buf[n++] = c;
            i++;
            continue;
        }
        i++;
        if (i >= len) {
            goto invalid;
        }
        c = READ(sc, i);
        if (c != 'u') {
            switch (c) {
            case '"': break;
            case '\\': break;
            case '/': break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            default: goto invalid;
            }
            buf[n++] = c;
            i++;
            continue;
        }
        /* \uXXXX, and a following \uXXXX low surrogate joined to a high one, exactly as
         * scanstring_unicode does (including its "end + 6 < len" look-ahead). */
        i++;
        if (i + 4 > len) {
            goto invalid;
        }
        c = 0;
        for (j = i; j < i + 4; j++) {
            int h = hex_value(READ(sc, j));
            if (h < 0) {
                goto invalid;
            }
            c = (c << 4) | (Py_UCS4)h;
        }
        i += 4;
        if (Py_UNICODE_IS_HIGH_SURROGATE(c) && i + 6 < len && READ(sc, i) == '\\' &&
            READ(sc, i + 1) == 'u') {
            Py_UCS4 c2 = 0;
            for (j = i + 2; j < i + 6; j++) {
                int h = hex_value(READ(sc, j));
                if (h < 0) {
                    goto invalid;
                }
                c2 = (c2 << 4) | (Py_UCS4)h;
            }
            if (Py_UNICODE_IS_LOW_SURROGATE(c2)) {
                c = Py_UNICODE_JOIN_SURROGATES(c, c2);
                i += 6;
            }
        }
        if (IS_SURROGATE(c)) {
            sc->surrogate = 1;
        }
        buf[n++] = c;
    }
    *next = i + 1;
    PyObject *result = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, buf, n);
    PyMem_Free(buf);
    return result;
invalid:
    PyMem_Free(buf);
    invalid_json();
    return NULL;
}

/* A number (_match_number_unicode): ints become int, fractions and exponents float, and a
 * float that overflows to infinity is refused as _finite_float refuses it. */
static PyObject *
scan_number(Scanner *sc, Py_ssize_t start, Py_ssize_t *next)
{
    Py_ssize_t idx = start, end_idx = sc->end_idx;
    int is_float = 0;
    if (READ(sc, idx) == '-') {
        idx++;
        if (idx > end_idx) {
            invalid_json();
            return NULL;
        }
    }
    Py_UCS4 c = READ(sc, idx);
    if (c >= '1' && c <= '9') {
        idx++;
        while (idx <= end_idx && IS_DIGIT(READ(sc, idx))) {
            idx++;
        }
    }
    else if (c == '0') {
        idx++;
    }
    else {
        invalid_json();
        return NULL;
    }
    if (idx < end_idx && READ(sc, idx) == '.' && IS_DIGIT(READ(sc, idx + 1))) {
        is_float = 1;
        idx += 2;
        while (idx <= end_idx && IS_DIGIT(READ(sc, idx))) {
            idx++;
        }
    }
    if (idx < end_idx && (READ(sc, idx) == 'e' || READ(sc, idx) == 'E')) {
        Py_ssize_t e_start = idx;
        idx++;
        if (idx < end_idx && (READ(sc, idx) == '-' || READ(sc, idx) == '+')) {
            idx++;
        }
        while (idx <= end_idx && IS_DIGIT(READ(sc, idx))) {
            idx++;
        }
        if (IS_DIGIT(READ(sc, idx - 1))) {
            is_float = 1;
        }
        else {
            idx = e_start;
        }
    }
    *next = idx;
    Py_ssize_t n = idx - start;
    if (!is_float && n <= 18) {
        long long v = 0;
        Py_ssize_t k = start;
        int negative = READ(sc, k) == '-';
        for (k += negative; k < idx; k++) {
            v = v * 10 + (long long)(READ(sc, k) - '0');
        }
        return PyLong_FromLongLong(negative ? -v : v);
    }
    char small[64];
    char *text = n < (Py_ssize_t)sizeof(small) ? small : PyMem_Malloc((size_t)n + 1);
    if (text == NULL) {
        return PyErr_NoMemory();
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        text[k] = (char)READ(sc, start + k);
    }
    text[n] = '\0';
    PyObject *result;
    if (is_float) {
        double d = PyOS_string_to_double(text, NULL, NULL);
        if (d == -1.0 && PyErr_Occurred()) {
            result = NULL;
        }
        else if (isinf(d)) {
            raise_malformed(R_NUMBER_OUT_OF_RANGE, "JSON number too large");
            result = NULL;
        }
        else {
            result = PyFloat_FromDouble(d);
        }
    }
    else {
        result = PyLong_FromString(text, NULL, 10);
        if (result == NULL && PyErr_ExceptionMatches(PyExc_ValueError)) {
            /* Over sys.get_int_max_str_digits(): the only ValueError an int of digits gives. */
            PyErr_Clear();
            raise_malformed(R_NUMBER_OUT_OF_RANGE, "JSON number too large");
        }
    }
    if (text != small) {
        PyMem_Free(text);
    }
    return result;
}

static Py_ssize_t
skip_ws(Scanner *sc, Py_ssize_t idx)
{
    while (idx <= sc->end_idx && IS_WS(READ(sc, idx))) {
        idx++;
    }
    return idx;
}

/* After a member or an element: 1 at the closing bracket, 0 past a comma (idx then at the
 * next member), -1 at anything else. */
static int
next_member(Scanner *sc, Py_ssize_t *idx, Py_UCS4 close)
{
    Py_ssize_t i = skip_ws(sc, *idx);
    if (i <= sc->end_idx && READ(sc, i) == close) {
        *idx = i;
        return 1;
    }
    if (i > sc->end_idx || READ(sc, i) != ',') {
        return -1;
    }
    *idx = skip_ws(sc, i + 1);
    return 0;
}

/* An object after its '{' (_parse_object_unicode). A repeated member name is reported when
 * the object closes, as the object_pairs_hook of the Python reference reports it. */
static PyObject *
scan_object(Scanner *sc, Py_ssize_t idx, Py_ssize_t *next)
{
    Py_ssize_t end_idx = sc->end_idx;
    int duplicate = 0;
    PyObject *obj = PyDict_New();
    if (obj == NULL) {
        return NULL;
    }
    idx = skip_ws(sc, idx);
    if (idx > end_idx || READ(sc, idx) != '}') {
        while (idx <= end_idx) {
            Py_ssize_t after;
            if (READ(sc, idx) != '"') {
                goto invalid;
            }
            PyObject *key = scan_string(sc, idx + 1, &after);
            if (key == NULL) {
                goto bail;
            }
            idx = skip_ws(sc, after);
            if (idx > end_idx || READ(sc, idx) != ':') {
                Py_DECREF(key);
                goto invalid;
            }
            idx = skip_ws(sc, idx + 1);
            PyObject *value = scan_value(sc, idx, &after);
            if (value == NULL) {
                Py_DECREF(key);
                goto bail;
            }
            Py_ssize_t before = PyDict_GET_SIZE(obj);
            int failed = PyDict_SetItem(obj, key, value);
            Py_DECREF(key);
            Py_DECREF(value);
            if (failed) {
                goto bail;
            }
            if (PyDict_GET_SIZE(obj) == before) {
                duplicate = 1;
            }
            idx = after;
            int step = next_member(sc, &idx, '}');
            if (step > 0) {
                break;
            }
            if (step < 0) {
                goto invalid;
            }
        }
    }
    if (idx > end_idx || READ(sc, idx) != '}') {
        goto invalid;
    }
    if (duplicate) {
        raise_malformed(R_DUPLICATE_JSON_MEMBER, "duplicate JSON member name");
        goto bail;
    }
    *next = idx + 1;
    return obj;
invalid:
    invalid_json();
bail:
    Py_DECREF(obj);
    return NULL;
}

/* An array after its '[' (_parse_array_unicode). */
static PyObject *
scan_array(Scanner *sc, Py_ssize_t idx, Py_ssize_t *next)
{
    Py_ssize_t end_idx = sc->end_idx;
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    idx = skip_ws(sc, idx);
    if (idx > end_idx || READ(sc, idx) != ']') {
        while (idx <= end_idx) {
            Py_ssize_t after;
            PyObject *value = scan_value(sc, idx, &after);
            if (value == NULL) {
                goto bail;
            }
            int failed = PyList_Append(list, value);
            Py_DECREF(value);
            if (failed) {
                goto bail;
            }
            idx = after;
            int step = next_member(sc, &idx, ']');
            if (step > 0) {
                break;
            }
            if (step < 0) {
                goto invalid;
            }
        }
    }
    if (idx > end_idx || READ(sc, idx) != ']') {
        goto invalid;
    }
    *next = idx + 1;
    return list;
invalid:
    invalid_json();
bail:
    Py_DECREF(list);
    return NULL;
}

static int
matches(Scanner *sc, Py_ssize_t idx, const char *word)
{
    Py_ssize_t n = (Py_ssize_t)strlen(word);
    if (idx + n - 1 > sc->end_idx) {
        return 0;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        if (READ(sc, idx + k) != (Py_UCS4)(unsigned char)word[k]) {
            return 0;
        }
    }
    return 1;
}

static PyObject *
scan_container(Scanner *sc, Py_ssize_t idx, Py_ssize_t *next, int is_object)
{
    /* One recursion level per container, as Modules/_json.c counts them: input nested past
     * the interpreter's limit fails with RecursionError, which loads_text reports as too deep
     * once the stack has unwound (raising MalformedError here would itself recurse). */
    if (Py_EnterRecursiveCall(" while decoding JSON")) {
        return NULL;
    }
    if (++sc->depth > sc->max_depth) {
        /* The whole text nests too deeply, whatever else is wrong with it (json_loads_py
         * scans it first): no need to look further. */
        sc->depth--;
        Py_LeaveRecursiveCall();
        raise_malformed(R_NESTING_TOO_DEEP, "JSON nested too deeply");
        return NULL;
    }
    PyObject *result = is_object ? scan_object(sc, idx + 1, next) : scan_array(sc, idx + 1, next);
    sc->depth--;
    Py_LeaveRecursiveCall();
    return result;
}

/* One JSON value at idx (scan_once_unicode). */
static PyObject *
scan_value(Scanner *sc, Py_ssize_t idx, Py_ssize_t *next)
{
    if (idx > sc->end_idx) {
        invalid_json();
        return NULL;
    }
    switch (READ(sc, idx)) {
    case '"':
        return scan_string(sc, idx + 1, next);
    case '{':
        return scan_container(sc, idx, next, 1);
    case '[':
        return scan_container(sc, idx, next, 0);
    case 'n':
        if (matches(sc, idx, "null")) {
            *next = idx + 4;
            Py_RETURN_NONE;
        }
        break;
    case 't':
        if (matches(sc, idx, "true")) {
            *next = idx + 4;
            Py_RETURN_TRUE;
        }
        break;
    case 'f':
        if (matches(sc, idx, "false")) {
            *next = idx + 5;
            Py_RETURN_FALSE;
        }
        break;
    case 'N':
        if (matches(sc, idx, "NaN")) {
            raise_malformed(R_MALFORMED_JSON, "non-standard JSON constant NaN");
            return NULL;
        }
        break;
    case 'I':
        if (matches(sc, idx, "Infinity")) {
            raise_malformed(R_MALFORMED_JSON, "non-standard JSON constant Infinity");
            return NULL;
        }
        break;
    case '-':
        if (matches(sc, idx, "-Infinity")) {
            raise_malformed(R_MALFORMED_JSON, "non-standard JSON constant -Infinity");
            return NULL;
        }
        break;
    }
    return scan_number(sc, idx, next);
}

/* civic.encoding.nesting_exceeds: brackets outside strings, as a lexer reads strings (a quote,
 * escaped pairs, up to the next quote or the end), counted over the whole text. */
static int
nesting_exceeds(Scanner *sc, int limit)
{
    Py_ssize_t depth = 0, i = 0, len = sc->end_idx + 1;
    while (i < len) {
        Py_UCS4 c = READ(sc, i++);
        if (c == '"') {
            while (i < len) {
                c = READ(sc, i++);
                if (c == '\\') {
                    i++;
                }
                else if (c == '"') {
                    break;
                }
            }
        }
        else if (c == '[' || c == '{') {
            if (++depth > limit) {
                return 1;
            }
        }
        else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return 0;
}

/* json_loads_py on a str: leading whitespace, one value, trailing whitespace only, then
 * unpaired surrogates. Nesting is checked as the scan goes; when the scan fails on something
 * else, the whole text is scanned for nesting too, as json_loads_py does first. */
static PyObject *
loads_text(PyObject *text, int max_depth)
{
    if (PyUnicode_READY(text) < 0) {
        return NULL;
    }
    Scanner sc = {text, PyUnicode_KIND(text), PyUnicode_DATA(text),
                  PyUnicode_GET_LENGTH(text) - 1, max_depth, 0, 0};
    Py_ssize_t end;
    PyObject *value = scan_value(&sc, skip_ws(&sc, 0), &end);
    if (value != NULL && skip_ws(&sc, end) <= sc.end_idx) {
        Py_CLEAR(value);
        raise_malformed(R_MALFORMED_JSON, "trailing data after JSON");
    }
    if (value == NULL) {
        if (PyErr_ExceptionMatches(PyExc_RecursionError)) {
            /* only from a caller already deep in its own stack */
            PyErr_Clear();
            raise_malformed(R_NESTING_TOO_DEEP, "JSON nested too deeply");
        }
        else if (PyErr_ExceptionMatches(MalformedError) && nesting_exceeds(&sc, max_depth)) {
            PyErr_Clear();
            raise_malformed(R_NESTING_TOO_DEEP, "JSON nested too deeply");
        }
        return NULL;
    }
    if (sc.surrogate) {
        Py_DECREF(value);
        raise_malformed(R_MALFORMED_UTF8, "unpaired surrogate in a JSON string");
        return NULL;
    }
    return value;
}

static PyObject *
loads_utf8(const char *data, Py_ssize_t n, int max_depth)
{
    PyObject *text = PyUnicode_DecodeUTF8(data, n, "strict");
    if (text == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            raise_malformed(R_MALFORMED_UTF8, "invalid UTF-8");
        }
        return NULL;
    }
    PyObject *value = loads_text(text, max_depth);
    Py_DECREF(text);
    return value;
}

static PyObject *
speedups_json_loads(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *depth_arg = NULL;
    if (!configured()) {
        return NULL;
    }
    if (nargs < 1 || nargs + nkw > 2 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "json_loads(data, max_depth=64)");
        return NULL;
    }
    if (nargs == 2) {
        depth_arg = args[1];
    }
    else if (nkw == 1) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(kwnames, 0)) ||
            PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "max_depth") != 0) {
            PyErr_SetString(PyExc_TypeError, "json_loads(data, max_depth=64)");
            return NULL;
        }
        depth_arg = args[1];
    }
    int max_depth = 64;
    if (depth_arg != NULL) {
        int overflow;
        long d = PyLong_AsLongAndOverflow(depth_arg, &overflow);
        if (d == -1 && PyErr_Occurred()) {
            return NULL;
        }
        /* clamped to 0 .. MAX_DEPTH_LIMIT, as json_loads_py clamps it */
        max_depth = overflow > 0 || d > MAX_DEPTH_LIMIT ? MAX_DEPTH_LIMIT
                    : overflow < 0 || d < 0           ? 0
                                                      : (int)d;
    }
    PyObject *data = args[0];
    if (PyBytes_Check(data)) {
        return loads_utf8(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), max_depth);
    }
    if (PyUnicode_Check(data)) {
        return loads_text(data, max_depth);
    }
    PyErr_SetString(PyExc_TypeError, "json_loads() takes str or bytes");
    return NULL;
}

/* ---- SD-JWT disclosures ----------------------------------------------------------------- */

/* The MalformedError being raised, re-raised as MALFORMED_DISCLOSURE with its detail. */
static void
reraise_as_disclosure_error(void)
{
    if (!PyErr_ExceptionMatches(MalformedError)) {
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *detail = value == NULL ? NULL : PyObject_GetAttr(value, DetailAttr);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (detail != NULL) {
        raise_malformed_obj(R_MALFORMED_DISCLOSURE, detail);
        Py_DECREF(detail);
    }
}

/* base64url(SHA-256(ascii)), unpadded: the digest a payload's _sd array lists. */
static PyObject *
disclosure_digest(const unsigned char *ascii, Py_ssize_t n)
{
    /* A bytes copy: hashlib takes it faster than a memoryview over the str's characters. */
    PyObject *data = PyBytes_FromStringAndSize((const char *)ascii, n);
    if (data == NULL) {
        return NULL;
    }
    PyObject *hash = PyObject_CallOneArg(Sha256, data);
    Py_DECREF(data);
    if (hash == NULL) {
        return NULL;
    }
    PyObject *digest = PyObject_CallMethod(hash, "digest", NULL);
    Py_DECREF(hash);
    if (digest == NULL) {
        return NULL;
    }
    if (!PyBytes_Check(digest) || PyBytes_GET_SIZE(digest) != 32) {
        Py_DECREF(digest);
        PyErr_SetString(PyExc_RuntimeError, "sha256 digest is not 32 bytes");
        return NULL;
    }
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(digest);
    char out[43];
    int o = 0;
    for (int i = 0; i < 30; i += 3) {
        unsigned int v = ((unsigned int)d[i] << 16) | ((unsigned int)d[i + 1] << 8) | d[i + 2];
        out[o++] = B64URL_CHARS[(v >> 18) & 63];
        out[o++] = B64URL_CHARS[(v >> 12) & 63];
        out[o++] = B64URL_CHARS[(v >> 6) & 63];
        out[o++] = B64URL_CHARS[v & 63];
    }
    unsigned int v = ((unsigned int)d[30] << 16) | ((unsigned int)d[31] << 8);
    out[o++] = B64URL_CHARS[(v >> 18) & 63];
    out[o++] = B64URL_CHARS[(v >> 12) & 63];
    out[o++] = B64URL_CHARS[(v >> 6) & 63];
    Py_DECREF(digest);
    return PyUnicode_FromStringAndSize(out, 43);
}

/* One disclosure as a Disclosure(encoded, digest, salt, name, value); parse_disclosures_py's
 * checks in its order. */
static PyObject *
parse_one_disclosure(PyObject *encoded)
{
    if (!PyUnicode_Check(encoded)) {
        PyErr_SetString(PyExc_TypeError, "disclosures are str");
        return NULL;
    }
    if (PyUnicode_READY(encoded) < 0) {
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(encoded);
    if (n == 0) {
        raise_malformed(R_MALFORMED_DISCLOSURE, "empty disclosure");
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(encoded)) {
        raise_malformed(R_MALFORMED_DISCLOSURE, "non-ASCII base64url");
        return NULL;
    }
    const unsigned char *ascii = (const unsigned char *)PyUnicode_1BYTE_DATA(encoded);
    PyObject *raw = b64url_decode_chars(ascii, n);
    if (raw == NULL) {
        reraise_as_disclosure_error();
        return NULL;
    }
    PyObject *content = loads_utf8(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), 64);
    Py_DECREF(raw);
    if (content == NULL) {
        reraise_as_disclosure_error();
        return NULL;
    }
    Py_ssize_t size = PyList_CheckExact(content) ? PyList_GET_SIZE(content) : 0;
    PyObject *salt, *name, *value;
    if (size == 3) {
        salt = PyList_GET_ITEM(content, 0);
        name = PyList_GET_ITEM(content, 1);
        value = PyList_GET_ITEM(content, 2);
        if (!PyUnicode_CheckExact(salt)) {
            raise_malformed(R_MALFORMED_DISCLOSURE, "disclosure salt is not a string");
            goto fail;
        }
        if (!PyUnicode_CheckExact(name)) {
            raise_malformed(R_MALFORMED_DISCLOSURE, "claim name is not a string");
            goto fail;
        }
        int reserved = PySet_Contains(ReservedNames, name);
        if (reserved < 0) {
            goto fail;
        }
        if (reserved) {
            PyObject *detail = PyUnicode_FromFormat("disclosed claim name %R", name);
            if (detail != NULL) {
                raise_malformed_obj(R_RESERVED_CLAIM_NAME, detail);
                Py_DECREF(detail);
            }
            goto fail;
        }
    }
    else if (size == 2) {
        salt = PyList_GET_ITEM(content, 0);
        name = Py_None;
        value = PyList_GET_ITEM(content, 1);
        if (!PyUnicode_CheckExact(salt)) {
            raise_malformed(R_MALFORMED_DISCLOSURE, "disclosure salt is not a string");
            goto fail;
        }
    }
    else {
        raise_malformed(R_MALFORMED_DISCLOSURE, "disclosure is not a 2 or 3 array");
        goto fail;
    }
    PyObject *digest = disclosure_digest(ascii, n);
    if (digest == NULL) {
        goto fail;
    }
    /* A Disclosure is a NamedTuple: filled as tuple.__new__(Disclosure, ...) fills it. */
    PyObject *result = DisclosureType->tp_alloc(DisclosureType, 5);
    if (result == NULL) {
        Py_DECREF(digest);
        goto fail;
    }
    Py_INCREF(encoded);
    Py_INCREF(salt);
    Py_INCREF(name);
    Py_INCREF(value);
    PyTuple_SET_ITEM(result, 0, encoded);
    PyTuple_SET_ITEM(result, 1, digest);
    PyTuple_SET_ITEM(result, 2, salt);
    PyTuple_SET_ITEM(result, 3, name);
    PyTuple_SET_ITEM(result, 4, value);
    Py_DECREF(content);
    return result;
fail:
    Py_DECREF(content);
    return NULL;
}

static PyObject *
speedups_parse_disclosures(PyObject *module, PyObject *arg)
{
    if (!configured()) {
        return NULL;
    }
    if (DisclosureType == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure_disclosures() was not called");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(arg, "parse_disclosures() takes a sequence of str");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *result = PyTuple_New(n);
    if (result == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *disclosure = parse_one_disclosure(PySequence_Fast_GET_ITEM(seq, i));
        if (disclosure == NULL) {
            Py_DECREF(seq);
            Py_DECREF(result);
            return NULL;
        }
        PyTuple_SET_ITEM(result, i, disclosure);
    }
    Py_DECREF(seq);
    return result;
}

/* ---- SD-JWT disclosure processing ------------------------------------------------------- */

/* resolve_disclosures_py (RFC 9901 section 7.1 step 3): the payload with each referenced
 * disclosure substituted, recursively, with the claim path and digest of each one found, in
 * the reference's order of traversal and of checks. */
typedef struct {
    PyObject *by_digest; /* digest -> Disclosure */
    PyObject *seen;      /* every digest met so far, anywhere */
    PyObject *disclosed; /* claim paths, in the order found */
    PyObject *digests;   /* their digests, parallel to disclosed */
} Resolver;

static PyObject *resolve_object(Resolver *r, PyObject *node, PyObject *path);
static PyObject *resolve_array(Resolver *r, PyObject *node, PyObject *path);

/* path + (item,) as a new tuple. */
static PyObject *
path_plus(PyObject *path, PyObject *item)
{
    Py_ssize_t n = PyTuple_GET_SIZE(path);
    PyObject *result = PyTuple_New(n + 1);
    if (result == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *part = PyTuple_GET_ITEM(path, i);
        Py_INCREF(part);
        PyTuple_SET_ITEM(result, i, part);
    }
    Py_INCREF(item);
    PyTuple_SET_ITEM(result, n, item);
    return result;
}

static PyObject *
resolve_value(Resolver *r, PyObject *node, PyObject *path)
{
    if (PyDict_CheckExact(node)) {
        return resolve_object(r, node, path);
    }
    if (PyList_CheckExact(node)) {
        return resolve_array(r, node, path);
    }
    Py_INCREF(node);
    return node;
}

static int
is_ascii_key(PyObject *key, const char *text)
{
    return PyUnicode_Check(key) && PyUnicode_CompareWithASCIIString(key, text) == 0;
}

/* The first sight of a digest: a string never met before. 0 on success, -1 with the error. */
static int
see_digest(Resolver *r, PyObject *digest)
{
    if (!PyUnicode_Check(digest)) {
        raise_malformed(R_MALFORMED_SD_JWT, "digest is not a string");
        return -1;
    }
    int seen = PySet_Contains(r->seen, digest);
    if (seen < 0) {
        return -1;
    }
    if (seen) {
        raise_error(VerificationError, R_DIGEST_DUPLICATE, "digest appears twice");
        return -1;
    }
    return PySet_Add(r->seen, digest);
}

/* Records a disclosure found at claim_path and returns its processed value. */
static PyObject *
take_disclosure(Resolver *r, PyObject *disclosure, PyObject *claim_path)
{
    if (PyList_Append(r->disclosed, claim_path) < 0 ||
        PyList_Append(r->digests, PyTuple_GET_ITEM(disclosure, 1)) < 0) {
        return NULL;
    }
    return resolve_value(r, PyTuple_GET_ITEM(disclosure, 4), claim_path);
}

/* A container at claim depth MAX_CLAIM_DEPTH is refused (resolve_disclosures_py). */
#define MAX_CLAIM_DEPTH 64

static int
claims_too_deep(PyObject *path)
{
    if (PyTuple_GET_SIZE(path) >= MAX_CLAIM_DEPTH) {
        raise_malformed(R_NESTING_TOO_DEEP, "claims nested too deeply");
        return 1;
    }
    return 0;
}

static PyObject *
resolve_object(Resolver *r, PyObject *node, PyObject *path)
{
    if (claims_too_deep(path) || Py_EnterRecursiveCall(" in SD-JWT disclosures")) {
        return NULL;
    }
    PyObject *out = PyDict_Copy(node), *digests = NULL, *key, *value;
    Py_ssize_t pos = 0;
    if (out == NULL) {
        goto fail;
    }
    /* Containers replaced in place; '_sd' skipped here and read below. */
    while (PyDict_Next(node, &pos, &key, &value)) {
        int is_dict = PyDict_CheckExact(value), is_list = PyList_CheckExact(value);
        if (is_dict || is_list) {
            int reserved = PySet_Contains(ReservedNames, key);
            if (reserved < 0) {
                goto fail;
            }
            if (reserved) {
                if (is_ascii_key(key, "_sd")) {
                    continue;
                }
                raise_malformed(R_MALFORMED_SD_JWT, "'...' outside an array element");
                goto fail;
            }
            Py_INCREF(key);
            Py_INCREF(value);
            PyObject *sub = path_plus(path, key);
            PyObject *done = sub == NULL ? NULL
                             : is_dict  ? resolve_object(r, value, sub)
                                        : resolve_array(r, value, sub);
            Py_XDECREF(sub);
            Py_DECREF(value);
            if (done == NULL || PyDict_SetItem(out, key, done) < 0) {
                Py_XDECREF(done);
                Py_DECREF(key);
                goto fail;
            }
            Py_DECREF(done);
            Py_DECREF(key);
        }
        else if (is_ascii_key(key, "...")) {
            raise_malformed(R_MALFORMED_SD_JWT, "'...' outside an array element");
            goto fail;
        }
    }
    /* out.pop("_sd", None): an absent or null _sd means no digests. */
    digests = PyDict_GetItemWithError(out, SdKey);
    if (digests == NULL) {
        if (PyErr_Occurred()) {
            goto fail;
        }
        Py_LeaveRecursiveCall();
        return out;
    }
    Py_INCREF(digests);
    if (PyDict_DelItem(out, SdKey) < 0) {
        goto fail;
    }
    if (digests == Py_None) {
        Py_DECREF(digests);
        Py_LeaveRecursiveCall();
        return out;
    }
    if (!PyList_Check(digests)) {
        raise_malformed(R_MALFORMED_SD_JWT, "_sd is not an array");
        goto fail;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(digests); i++) {
        PyObject *digest = PyList_GET_ITEM(digests, i);
        if (see_digest(r, digest) < 0) {
            goto fail;
        }
        PyObject *disclosure = PyDict_GetItemWithError(r->by_digest, digest);
        if (disclosure == NULL) {
            if (PyErr_Occurred()) {
                goto fail;
            }
            continue; /* undisclosed claim or decoy */
        }
        PyObject *name = PyTuple_GET_ITEM(disclosure, 3);
        if (name == Py_None) {
            raise_error(VerificationError, R_MALFORMED_DISCLOSURE,
                        "array-element disclosure used for an object");
            goto fail;
        }
        int taken = PyDict_Contains(out, name);
        if (taken < 0) {
            goto fail;
        }
        if (taken) {
            PyObject *detail = PyUnicode_FromFormat("claim %R twice", name);
            if (detail != NULL) {
                raise_error_obj(VerificationError, R_CLAIM_NAME_COLLISION, detail);
                Py_DECREF(detail);
            }
            goto fail;
        }
        Py_INCREF(disclosure);
        PyObject *claim_path = path_plus(path, name);
        PyObject *claim = claim_path == NULL ? NULL : take_disclosure(r, disclosure, claim_path);
        Py_XDECREF(claim_path);
        int failed = claim == NULL || PyDict_SetItem(out, name, claim) < 0;
        Py_XDECREF(claim);
        Py_DECREF(disclosure);
        if (failed) {
            goto fail;
        }
    }
    Py_DECREF(digests);
    Py_LeaveRecursiveCall();
    return out;
fail:
    Py_XDECREF(digests);
    Py_XDECREF(out);
    Py_LeaveRecursiveCall();
    return NULL;
}

static PyObject *
resolve_array(Resolver *r, PyObject *node, PyObject *path)
{
    if (claims_too_deep(path) || Py_EnterRecursiveCall(" in SD-JWT disclosures")) {
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(node); i++) {
        PyObject *item = PyList_GET_ITEM(node, i), *element;
        int marked = 0;
        Py_INCREF(item);
        if (PyDict_Check(item)) {
            marked = PyDict_Contains(item, EllipsisKey);
            if (marked < 0) {
                Py_DECREF(item);
                goto fail;
            }
        }
        PyObject *index = PyLong_FromSsize_t(PyList_GET_SIZE(out));
        PyObject *element_path = index == NULL ? NULL : path_plus(path, index);
        Py_XDECREF(index);
        if (element_path == NULL) {
            Py_DECREF(item);
            goto fail;
        }
        if (!marked) {
            element = resolve_value(r, item, element_path);
        }
        else if (PyDict_GET_SIZE(item) != 1) {
            raise_malformed(R_MALFORMED_SD_JWT, "'...' with other members");
            element = NULL;
        }
        else {
            PyObject *digest = PyDict_GetItem(item, EllipsisKey);
            PyObject *disclosure = NULL;
            element = NULL;
            if (see_digest(r, digest) == 0) {
                disclosure = PyDict_GetItemWithError(r->by_digest, digest);
                if (disclosure == NULL && !PyErr_Occurred()) {
                    /* undisclosed element or decoy */
                    Py_DECREF(element_path);
                    Py_DECREF(item);
                    continue;
                }
            }
            if (disclosure != NULL) {
                if (PyTuple_GET_ITEM(disclosure, 3) != Py_None) {
                    raise_error(VerificationError, R_MALFORMED_DISCLOSURE,
                                "object disclosure used for an element");
                }
                else {
                    Py_INCREF(disclosure);
                    element = take_disclosure(r, disclosure, element_path);
                    Py_DECREF(disclosure);
                }
            }
        }
        Py_DECREF(element_path);
        Py_DECREF(item);
        if (element == NULL) {
            goto fail;
        }
        int failed = PyList_Append(out, element);
        Py_DECREF(element);
        if (failed) {
            goto fail;
        }
    }
    Py_LeaveRecursiveCall();
    return out;
fail:
    Py_XDECREF(out);
    Py_LeaveRecursiveCall();
    return NULL;
}

static PyObject *
speedups_resolve_disclosures(PyObject *module, PyObject *args)
{
    PyObject *payload, *disclosures, *result = NULL;
    if (!PyArg_ParseTuple(args, "O!O!:resolve_disclosures", &PyDict_Type, &payload,
                          &PyTuple_Type, &disclosures)) {
        return NULL;
    }
    if (VerificationError == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure_disclosures() was not called");
        return NULL;
    }
    Resolver r = {PyDict_New(), PySet_New(NULL), PyList_New(0), PyList_New(0)};
    if (r.by_digest == NULL || r.seen == NULL || r.disclosed == NULL || r.digests == NULL) {
        goto done;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(disclosures);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *disclosure = PyTuple_GET_ITEM(disclosures, i);
        if (!PyObject_TypeCheck(disclosure, DisclosureType)) {
            PyErr_SetString(PyExc_TypeError, "resolve_disclosures() takes Disclosure tuples");
            goto done;
        }
        if (PyDict_SetItem(r.by_digest, PyTuple_GET_ITEM(disclosure, 1), disclosure) < 0) {
            goto done;
        }
    }
    if (PyDict_GET_SIZE(r.by_digest) != n) {
        raise_error(VerificationError, R_DISCLOSURE_DUPLICATE, "disclosure sent twice");
        goto done;
    }
    PyObject *root = PyTuple_New(0);
    if (root == NULL) {
        goto done;
    }
    PyObject *claims = resolve_object(&r, payload, root);
    Py_DECREF(root);
    if (claims != NULL) {
        result = PyTuple_Pack(3, claims, r.disclosed, r.digests);
        Py_DECREF(claims);
    }
done:
    Py_XDECREF(r.by_digest);
    Py_XDECREF(r.seen);
    Py_XDECREF(r.disclosed);
    Py_XDECREF(r.digests);
    return result;
}

/* ---- configuration ---------------------------------------------------------------------- */

static int
take_reason(PyObject *reasons, const char *name, PyObject **slot)
{
    PyObject *member = PyObject_GetAttrString(reasons, name);
    if (member == NULL) {
        return -1;
    }
    Py_XSETREF(*slot, member);
    return 0;
}

static PyObject *
speedups_configure(PyObject *module, PyObject *args)
{
    PyObject *error, *reasons, *sha256;
    if (!PyArg_ParseTuple(args, "OOO:configure", &error, &reasons, &sha256)) {
        return NULL;
    }
    if (!PyType_Check(error) || !PyType_IsSubtype((PyTypeObject *)error,
                                                  (PyTypeObject *)PyExc_Exception)) {
        PyErr_SetString(PyExc_TypeError, "the error must be an exception class");
        return NULL;
    }
    if (take_reason(reasons, "MALFORMED_BASE64", &R_MALFORMED_BASE64) ||
        take_reason(reasons, "MALFORMED_JSON", &R_MALFORMED_JSON) ||
        take_reason(reasons, "MALFORMED_UTF8", &R_MALFORMED_UTF8) ||
        take_reason(reasons, "DUPLICATE_JSON_MEMBER", &R_DUPLICATE_JSON_MEMBER) ||
        take_reason(reasons, "NUMBER_OUT_OF_RANGE", &R_NUMBER_OUT_OF_RANGE) ||
        take_reason(reasons, "NESTING_TOO_DEEP", &R_NESTING_TOO_DEEP) ||
        take_reason(reasons, "MALFORMED_DISCLOSURE", &R_MALFORMED_DISCLOSURE) ||
        take_reason(reasons, "RESERVED_CLAIM_NAME", &R_RESERVED_CLAIM_NAME) ||
        take_reason(reasons, "MALFORMED_SD_JWT", &R_MALFORMED_SD_JWT) ||
        take_reason(reasons, "DISCLOSURE_DUPLICATE", &R_DISCLOSURE_DUPLICATE) ||
        take_reason(reasons, "DIGEST_DUPLICATE", &R_DIGEST_DUPLICATE) ||
        take_reason(reasons, "CLAIM_NAME_COLLISION", &R_CLAIM_NAME_COLLISION)) {
        return NULL;
    }
    Py_INCREF(sha256);
    Py_XSETREF(Sha256, sha256);
    Py_INCREF(error);
    Py_XSETREF(MalformedError, error);
    Py_RETURN_NONE;
}

static PyObject *
speedups_configure_disclosures(PyObject *module, PyObject *args)
{
    PyObject *disclosure, *reserved, *verification_error;
    if (!PyArg_ParseTuple(args, "OOO:configure_disclosures", &disclosure, &reserved,
                          &verification_error)) {
        return NULL;
    }
    if (!PyType_Check(verification_error) ||
        !PyType_IsSubtype((PyTypeObject *)verification_error, (PyTypeObject *)PyExc_Exception)) {
        PyErr_SetString(PyExc_TypeError, "the error must be an exception class");
        return NULL;
    }
    if (!PyType_Check(disclosure) ||
        !PyType_IsSubtype((PyTypeObject *)disclosure, &PyTuple_Type) ||
        ((PyTypeObject *)disclosure)->tp_basicsize != PyTuple_Type.tp_basicsize) {
        PyErr_SetString(PyExc_TypeError, "Disclosure must be a NamedTuple without extra slots");
        return NULL;
    }
    if (!PyFrozenSet_Check(reserved)) {
        PyErr_SetString(PyExc_TypeError, "reserved names must be a frozenset");
        return NULL;
    }
    Py_INCREF(reserved);
    Py_XSETREF(ReservedNames, reserved);
    Py_INCREF(verification_error);
    Py_XSETREF(VerificationError, verification_error);
    Py_INCREF(disclosure);
    Py_XSETREF(DisclosureType, (PyTypeObject *)disclosure);
    Py_RETURN_NONE;
}

static PyMethodDef speedups_methods[] = {
    {"configure", speedups_configure, METH_VARARGS,
     "configure(error, reasons, sha256): bind the error class, reason codes and SHA-256."},
    {"configure_disclosures", speedups_configure_disclosures, METH_VARARGS,
     "configure_disclosures(disclosure, reserved_names, verification_error): bind the "
     "Disclosure type."},
    {"b64url_decode", speedups_b64url_decode, METH_O,
     "Strict unpadded base64url decode; see civic.encoding.b64url_decode_py."},
    {"json_loads", (PyCFunction)(void (*)(void))speedups_json_loads,
     METH_FASTCALL | METH_KEYWORDS,
     "Strict JSON parse; see civic.encoding.json_loads_py."},
    {"parse_disclosures", speedups_parse_disclosures, METH_O,
     "Decode SD-JWT disclosures; see civic.sdjwt.parse_disclosures_py."},
    {"resolve_disclosures", speedups_resolve_disclosures, METH_VARARGS,
     "Substitute disclosures into a payload; see civic.sdjwt.resolve_disclosures_py."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "civic._speedups",
    "Optional C versions of civic's strict decoders (see civic/_speedups.c).", -1,
    speedups_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    memset(B64URL_VALUE, -1, sizeof(B64URL_VALUE));
    for (int i = 0; i < 64; i++) {
        B64URL_VALUE[(unsigned char)B64URL_CHARS[i]] = (signed char)i;
    }
    DetailAttr = PyUnicode_InternFromString("detail");
    SdKey = PyUnicode_InternFromString("_sd");
    EllipsisKey = PyUnicode_InternFromString("...");
    if (DetailAttr == NULL || SdKey == NULL || EllipsisKey == NULL) {
        return NULL;
    }
    return PyModule_Create(&speedups_module);
}
