/* datetime.c - see include/mailgrab/datetime.h */
#include "mailgrab/datetime.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

long long mg_days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

static bool is_leap(long long y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned month_days(long long y, unsigned m)
{
    static const unsigned days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return (m == 2 && is_leap(y)) ? 29 : days[m - 1];
}

static int month_of(const char *t, size_t n)
{
    static const char *const names[12] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
    if (n < 3)
        return 0;
    for (int i = 0; i < 12; i++)
        if (strncasecmp(t, names[i], 3) == 0)
            return i + 1;
    return 0;
}

static bool is_dayname(const char *t, size_t n)
{
    static const char *const names[7] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
    if (n < 3)
        return false;
    for (int i = 0; i < 7; i++)
        if (strncasecmp(t, names[i], 3) == 0)
            return true;
    return false;
}

/* Zone names to offsets in minutes east of UTC. */
static bool named_zone(const char *t, size_t n, int *minutes)
{
    static const struct {
        const char *name;
        int off;
    } zones[] = {
        {"UT", 0},        {"UTC", 0},       {"GMT", 0},       {"Z", 0},         {"EST", -5 * 60},
        {"EDT", -4 * 60}, {"CST", -6 * 60}, {"CDT", -5 * 60}, {"MST", -7 * 60}, {"MDT", -6 * 60},
        {"PST", -8 * 60}, {"PDT", -7 * 60}, {"CET", 60},      {"CEST", 120},    {"MET", 60},
        {"MEST", 120},    {"BST", 60},      {"EET", 120},     {"EEST", 180},    {"WET", 0},
        {"WEST", 60},     {"JST", 9 * 60},  {"KST", 9 * 60},  {"HKT", 8 * 60},  {"IST", 330},
        {"AEST", 600},    {"AEDT", 660},    {"NZST", 720},    {"NZDT", 780},    {"MSK", 180},
    };
    for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
        if (strlen(zones[i].name) == n && strncasecmp(t, zones[i].name, n) == 0) {
            *minutes = zones[i].off;
            return true;
        }
    /*
     * Military letters: RFC 822 got their signs backwards and RFC 5322 says to
     * treat them as -0000 (unknown offset), so they read as UTC.
     */
    if (n == 1 && ((t[0] >= 'A' && t[0] <= 'I') || (t[0] >= 'K' && t[0] <= 'Y') ||
                   (t[0] >= 'a' && t[0] <= 'i') || (t[0] >= 'k' && t[0] <= 'y'))) {
        *minutes = 0;
        return true;
    }
    return false;
}

static bool all_digits(const char *t, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (t[i] < '0' || t[i] > '9')
            return false;
    return true;
}

static long num(const char *t, size_t n)
{
    long v = 0;
    for (size_t i = 0; i < n && i < 9; i++)
        v = v * 10 + (t[i] - '0');
    return v;
}

/* hh:mm[:ss] with 1-2 digit fields. */
static bool parse_time(const char *t, size_t n, int *h, int *m, int *s)
{
    long f[3] = {0, 0, 0};
    int nf = 0;
    size_t i = 0;
    while (i < n && nf < 3) {
        size_t st = i;
        while (i < n && t[i] >= '0' && t[i] <= '9')
            i++;
        if (i == st || i - st > 2)
            return false;
        f[nf++] = num(t + st, i - st);
        if (i < n) {
            if (t[i] != ':' && t[i] != '.')
                return false;
            i++;
        }
    }
    if (i != n || nf < 2)
        return false;
    /* 24:00 and leap seconds are not worth a special case */
    if (f[0] > 23 || f[1] > 59 || f[2] > 60)
        return false;
    *h = (int)f[0];
    *m = (int)f[1];
    *s = f[2] == 60 ? 59 : (int)f[2];
    return true;
}

/* YYYY-MM-DD[T ]hh:mm[:ss][Z|+hh:mm|+hhmm], which some scripts send. */
static int parse_iso(const char *b, size_t n, time_t *out)
{
    while (n > 0 && b[0] == ' ') {
        b++;
        n--;
    }
    if (n < 16 || !all_digits(b, 4) || b[4] != '-' || !all_digits(b + 5, 2) || b[7] != '-' ||
        !all_digits(b + 8, 2) || (b[10] != 'T' && b[10] != ' '))
        return -1;
    long y = num(b, 4), mo = num(b + 5, 2), d = num(b + 8, 2);
    size_t i = 11, st = i;
    while (i < n && ((b[i] >= '0' && b[i] <= '9') || b[i] == ':'))
        i++;
    int h, mi, sec;
    if (!parse_time(b + st, i - st, &h, &mi, &sec))
        return -1;
    if (i < n && b[i] == '.') /* fractional seconds */
        while (++i < n && b[i] >= '0' && b[i] <= '9')
            ;
    long zone = 0;
    if (i < n && (b[i] == 'Z' || b[i] == 'z')) {
        i++;
    } else if (i < n && (b[i] == '+' || b[i] == '-')) {
        char z[4];
        size_t k = 0;
        for (size_t j = i + 1; j < n && k < 4 && b[j] != ' '; j++)
            if (b[j] != ':')
                z[k++] = b[j];
        if (k != 4 || !all_digits(z, 4) || num(z, 2) > 23 || num(z + 2, 2) > 59)
            return -1;
        zone = (num(z, 2) * 60 + num(z + 2, 2)) * (b[i] == '-' ? -1 : 1);
    }
    if (y < 1900 || mo < 1 || mo > 12 || d < 1 || (unsigned)d > month_days(y, (unsigned)mo))
        return -1;
    long long days = mg_days_from_civil(y, (unsigned)mo, (unsigned)d);
    *out = (time_t)(days * 86400LL + h * 3600LL + mi * 60LL + sec - zone * 60LL);
    return 0;
}

int mg_date_parse(const char *s, size_t n, time_t *out)
{
    /* strip comments (nested, with quoted-pairs) and map separators to spaces */
    char buf[256];
    size_t bl = 0;
    int depth = 0;
    for (size_t i = 0; i < n && bl < sizeof(buf) - 1; i++) {
        char c = s[i];
        if (c == '\\' && depth > 0) {
            i++;
            continue;
        }
        if (c == '(') {
            depth++;
            continue;
        }
        if (c == ')' && depth > 0) {
            depth--;
            continue;
        }
        if (depth > 0)
            continue;
        if (c == ',' || c == '\r' || c == '\n' || c == '\t' || c == '\0')
            c = ' ';
        buf[bl++] = c;
    }
    buf[bl] = '\0';

    if (parse_iso(buf, bl, out) == 0)
        return 0;
    int day = 0, mon = 0, h = -1, mi = 0, sec = 0, zone = 0;
    long year = -1;
    bool have_zone = false, have_time = false;
    size_t i = 0;
    while (i < bl) {
        while (i < bl && buf[i] == ' ')
            i++;
        size_t st = i;
        while (i < bl && buf[i] != ' ')
            i++;
        const char *t = buf + st;
        size_t tl = i - st;
        if (tl == 0)
            break;
        /* split "4-Jan-2021" style tokens */
        if (tl > 5 && all_digits(t, 1) && memchr(t, '-', tl) != NULL && month_of(t + 2, 3) &&
            !have_time) {
            const char *d1 = memchr(t, '-', tl);
            const char *d2 = memchr(d1 + 1, '-', tl - (size_t)(d1 + 1 - t));
            if (d2 != NULL && all_digits(t, (size_t)(d1 - t)) &&
                all_digits(d2 + 1, tl - (size_t)(d2 + 1 - t))) {
                day = (int)num(t, (size_t)(d1 - t));
                mon = month_of(d1 + 1, (size_t)(d2 - d1 - 1));
                year = num(d2 + 1, tl - (size_t)(d2 + 1 - t));
                if (tl - (size_t)(d2 + 1 - t) == 2 || tl - (size_t)(d2 + 1 - t) == 3)
                    year = year < 50 ? year + 2000 : year + 1900;
                continue;
            }
        }
        if (memchr(t, ':', tl) != NULL) {
            if (have_time)
                continue; /* "GMT+01:00"-style junk after the time */
            if (!parse_time(t, tl, &h, &mi, &sec))
                return -1;
            have_time = true;
            continue;
        }
        if ((t[0] == '+' || t[0] == '-') && tl == 5 && all_digits(t + 1, 4)) {
            if (have_zone)
                continue;
            long hh = num(t + 1, 2), mm = num(t + 3, 2);
            if (hh > 23 || mm > 59)
                return -1;
            zone = (int)(hh * 60 + mm) * (t[0] == '-' ? -1 : 1);
            have_zone = true;
            continue;
        }
        if (all_digits(t, tl)) {
            long v = num(t, tl);
            if (tl > 4)
                return -1;
            if (day == 0 && tl <= 2 && !(mon == 0 && year >= 0)) {
                day = (int)v;
            } else if (year < 0) {
                year = v;
                if (tl == 2 || tl == 1)
                    year = v < 50 ? v + 2000 : v + 1900;
                else if (tl == 3)
                    year = v + 1900;
            } else if (day == 0 && tl <= 2) {
                day = (int)v;
            } else {
                return -1;
            }
            continue;
        }
        int mth = month_of(t, tl);
        if (mth != 0 && mon == 0 && tl <= 9) {
            mon = mth;
            continue;
        }
        if (is_dayname(t, tl) && tl <= 9) {
            continue;
        }
        int z;
        if (!have_zone && named_zone(t, tl, &z)) {
            zone = z;
            have_zone = true;
            continue;
        }
        /* "GMT+0100"-like or unknown words: ignore trailing junk after a time */
        if (have_time)
            continue;
        return -1;
    }
    if (day < 1 || mon < 1 || year < 1900 || year > 9999 || !have_time)
        return -1;
    if ((unsigned)day > month_days(year, (unsigned)mon))
        return -1;
    long long days = mg_days_from_civil(year, (unsigned)mon, (unsigned)day);
    long long t = days * 86400LL + h * 3600LL + mi * 60LL + sec - zone * 60LL;
    *out = (time_t)t;
    return 0;
}
