/* A strict RFC 8259 reader for one token response: the whole body is checked to be one JSON object, and the few
 * top-level members the plugin uses are decoded; everything else is skipped unread (it may hold secrets the
 * plugin has no business copying). */
#define _GNU_SOURCE
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct reader {
    const char *p;
    size_t len;
    size_t at;
} reader;

static void skip_space(reader *r) {
    while (r->at < r->len && (r->p[r->at] == ' ' || r->p[r->at] == '\t' || r->p[r->at] == '\n' || r->p[r->at] == '\r')) r->at++;
}

static int hex4(reader *r, unsigned *out) {
    if (r->len - r->at < 4) return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = r->p[r->at++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static int put_utf8(oauth2_buffer *b, unsigned cp) {
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (unsigned char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (unsigned char)(0xC0 | cp >> 6); u[1] = (unsigned char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) { u[0] = (unsigned char)(0xE0 | cp >> 12); u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); u[2] = (unsigned char)(0x80 | (cp & 0x3F)); n = 3; }
    else { u[0] = (unsigned char)(0xF0 | cp >> 18); u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F)); u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (unsigned char)(0x80 | (cp & 0x3F)); n = 4; }
    return oauth2_buffer_append(b, u, n, 0);
}

/* A string at r->at (its opening quote); decoded into `out` when `out` is not NULL. 0, -1 invalid, -2 memory. */
static int string(reader *r, oauth2_buffer *out) {
    if (r->at >= r->len || r->p[r->at] != '"') return -1;
    r->at++;
    for (;;) {
        if (r->at >= r->len) return -1;
        unsigned char c = (unsigned char)r->p[r->at];
        if (c == '"') {
            r->at++;
            if (out != NULL && out->ptr == NULL && oauth2_buffer_append(out, "", 0, 0) != 0) return -2;
            return 0;
        }
        if (c < 0x20) return -1;
        if (c != '\\') {
            size_t start = r->at;
            while (r->at < r->len && r->p[r->at] != '"' && r->p[r->at] != '\\' && (unsigned char)r->p[r->at] >= 0x20) r->at++;
            if (out != NULL && oauth2_buffer_append(out, r->p + start, r->at - start, 0) != 0) return -2;
            continue;
        }
        r->at++;
        if (r->at >= r->len) return -1;
        char e = r->p[r->at++];
        unsigned cp;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (hex4(r, &cp) != 0) return -1;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return -1;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned low;
                if (r->len - r->at < 2 || r->p[r->at] != '\\' || r->p[r->at + 1] != 'u') return -1;
                r->at += 2;
                if (hex4(r, &low) != 0 || low < 0xDC00 || low > 0xDFFF) return -1;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            break;
        default:
            return -1;
        }
        if (out != NULL && put_utf8(out, cp) != 0) return -2;
    }
}

static int digits(reader *r) {
    size_t start = r->at;
    while (r->at < r->len && r->p[r->at] >= '0' && r->p[r->at] <= '9') r->at++;
    return r->at > start ? 0 : -1;
}

static int number(reader *r) {
    if (r->at < r->len && r->p[r->at] == '-') r->at++;
    if (r->at < r->len && r->p[r->at] == '0') r->at++;
    else if (digits(r) != 0) return -1;
    if (r->at < r->len && r->p[r->at] == '.') {
        r->at++;
        if (digits(r) != 0) return -1;
    }
    if (r->at < r->len && (r->p[r->at] == 'e' || r->p[r->at] == 'E')) {
        r->at++;
        if (r->at < r->len && (r->p[r->at] == '+' || r->p[r->at] == '-')) r->at++;
        if (digits(r) != 0) return -1;
    }
    return 0;
}

static int literal(reader *r, const char *word) {
    size_t n = strlen(word);
    if (r->len - r->at < n || memcmp(r->p + r->at, word, n) != 0) return -1;
    r->at += n;
    return 0;
}

static int value(reader *r, int depth);

static int container(reader *r, int depth, char close) {
    if (depth > MAX_DEPTH) return -1;
    r->at++;
    skip_space(r);
    if (r->at < r->len && r->p[r->at] == close) {
        r->at++;
        return 0;
    }
    for (;;) {
        skip_space(r);
        if (close == '}') {
            int rc = string(r, NULL);
            if (rc != 0) return rc;
            skip_space(r);
            if (r->at >= r->len || r->p[r->at] != ':') return -1;
            r->at++;
        }
        int rc = value(r, depth + 1);
        if (rc != 0) return rc;
        skip_space(r);
        if (r->at >= r->len) return -1;
        if (r->p[r->at] == ',') {
            r->at++;
            continue;
        }
        if (r->p[r->at] != close) return -1;
        r->at++;
        return 0;
    }
}

static int value(reader *r, int depth) {
    skip_space(r);
    if (r->at >= r->len) return -1;
    switch (r->p[r->at]) {
    case '{': return container(r, depth, '}');
    case '[': return container(r, depth, ']');
    case '"': return string(r, NULL);
    case 't': return literal(r, "true");
    case 'f': return literal(r, "false");
    case 'n': return literal(r, "null");
    default: return number(r);
    }
}

enum { M_OTHER, M_ACCESS, M_REFRESH, M_EXPIRES, M_ERROR, M_DESCRIPTION };

static const char *const member_names[] = {"", "access_token", "refresh_token", "expires_in", "error", "error_description"};

static int member_kind(const oauth2_buffer *key) {
    for (int i = 1; i < 6; i++) {
        if (key->len == strlen(member_names[i]) && memcmp(key->ptr, member_names[i], key->len) == 0) return i;
    }
    return M_OTHER;
}

/* A string member's value, decoded, moved into a malloc'd NUL-terminated string. */
static int take_string(reader *r, char **out, size_t *out_len) {
    if (*out != NULL) return -1; /* a member the plugin reads, twice */
    oauth2_buffer b = {0};
    int rc = string(r, &b);
    if (rc != 0) {
        oauth2_buffer_wipe(&b);
        return rc;
    }
    *out = b.ptr; /* ownership moves; freed by oauth2_token_response_free, wiped first */
    if (out_len != NULL) *out_len = b.len;
    return 0;
}

static int top_level(reader *r, oauth2_token_response *out) {
    skip_space(r);
    if (r->at >= r->len || r->p[r->at] != '{') return -1;
    r->at++;
    skip_space(r);
    if (r->at < r->len && r->p[r->at] == '}') {
        r->at++;
        return 0;
    }
    size_t previous_end = 0; /* end of the previous member's value; 0 before the first */
    int cutting_last = 0;    /* the refresh_token member was the last one seen so far */
    size_t refresh_start = 0;
    unsigned seen = 0;       /* the kinds of member read so far, one bit each */
    for (;;) {
        skip_space(r);
        size_t key_start = r->at;
        if (cutting_last) {
            out->cut_start = refresh_start; /* cut the member and the comma after it, up to this key */
            out->cut_end = key_start;
            cutting_last = 0;
        }
        oauth2_buffer key = {0};
        int rc = string(r, &key);
        int kind = rc == 0 ? member_kind(&key) : M_OTHER;
        oauth2_buffer_wipe(&key);
        if (rc != 0) return rc;
        if (kind != M_OTHER) {
            if (seen & (1u << kind)) {
                out->duplicate = member_names[kind];
                return -3;
            }
            seen |= 1u << kind;
        }
        skip_space(r);
        if (r->at >= r->len || r->p[r->at] != ':') return -1;
        r->at++;
        skip_space(r);
        int is_string = r->at < r->len && r->p[r->at] == '"';
        size_t value_start = r->at;
        switch (kind) {
        case M_ACCESS:
            rc = is_string ? take_string(r, &out->access_token, &out->access_token_len) : value(r, 1);
            break;
        case M_REFRESH:
            rc = is_string ? take_string(r, &out->refresh_token, &out->refresh_token_len) : value(r, 1);
            break;
        case M_ERROR:
            rc = is_string ? take_string(r, &out->error, NULL) : value(r, 1);
            break;
        case M_DESCRIPTION:
            rc = is_string ? take_string(r, &out->error_description, NULL) : value(r, 1);
            break;
        case M_EXPIRES: {
            if (out->has_expires_in != 0) return -1;
            char *text = NULL;
            if (is_string) {
                rc = take_string(r, &text, NULL);
            } else {
                rc = value(r, 1);
            }
            if (rc != 0) {
                free(text);
                return rc;
            }
            const char *number_text = text;
            size_t number_len = text != NULL ? strlen(text) : r->at - value_start;
            char copy[64];
            if (text == NULL) number_text = r->p + value_start;
            int plain = number_len > 0 && number_len < sizeof copy;
            for (size_t i = 0; plain && i < number_len; i++) {
                char c = number_text[i];
                plain = (c >= '0' && c <= '9') || (text == NULL && (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'));
            }
            if (plain) {
                memcpy(copy, number_text, number_len);
                copy[number_len] = '\0';
                out->expires_in = strtod(copy, NULL);
                out->has_expires_in = 1;
            } else {
                out->has_expires_in = -1;
            }
            free(text);
            break;
        }
        default:
            rc = value(r, 1);
        }
        if (rc != 0) return rc;
        if (kind == M_REFRESH) {
            if (out->cut_end != 0 || cutting_last) return -1; /* twice */
            refresh_start = key_start;
            cutting_last = 1;
            if (previous_end != 0) {
                out->cut_start = previous_end; /* the comma before it, if it stays the last member */
                out->cut_end = r->at;
            } else {
                out->cut_start = key_start;
                out->cut_end = r->at;
            }
        }
        previous_end = r->at;
        skip_space(r);
        if (r->at >= r->len) return -1;
        if (r->p[r->at] == ',') {
            r->at++;
            continue;
        }
        if (r->p[r->at] != '}') return -1;
        r->at++;
        return 0;
    }
}

int oauth2_token_response_parse(const char *body, size_t len, oauth2_token_response *out) {
    memset(out, 0, sizeof *out);
    reader r = {body, len, 0};
    int rc = top_level(&r, out);
    if (rc != 0) return rc;
    skip_space(&r);
    return r.at == r.len ? 0 : -1;
}

static void wipe_string(char **s, size_t len) {
    if (*s == NULL) return;
    explicit_bzero(*s, len);
    free(*s);
    *s = NULL;
}

void oauth2_token_response_free(oauth2_token_response *r) {
    wipe_string(&r->access_token, r->access_token_len);
    wipe_string(&r->refresh_token, r->refresh_token_len);
    free(r->error);
    free(r->error_description);
    r->error = NULL;
    r->error_description = NULL;
}
