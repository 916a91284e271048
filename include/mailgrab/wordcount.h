/*
 * wordcount.h - keyword extraction: UTF-8 text to the set of distinct keywords
 * of one message, and the stopword list.
 *
 * A keyword is a run of letters/digits (an apostrophe between letters is kept),
 * lower-cased with our own tables for Latin (Latin-1, Extended-A, Extended
 * Additional), Greek and Cyrillic, at least 3 and at most 40 code points, not
 * all digits, not part of a URL or e-mail address, and not a stopword.
 * Behaviour never depends on the process locale.
 *
 * Owns: struct mg_stopwords owns its words (mg_stopwords_finish frees them;
 * accepts a zeroed struct). Word sets are caller-owned strmaps.
 * Thread-safety: all functions thread-safe; a stopword list may be shared
 * read-only between threads once loaded.
 */
#ifndef MAILGRAB_WORDCOUNT_H
#define MAILGRAB_WORDCOUNT_H

#include <stddef.h>
#include <stdint.h>

#include "mailgrab/strmap.h"

#define MG_WORD_MIN 3
#define MG_WORD_MAX 40
#define MG_WORDS_PER_MSG 10000

struct mg_stopwords {
    struct mg_strmap words;
};

/* Load one word per line ('#' comments, blank lines ignored); words are lower-cased. */
int mg_stopwords_load(struct mg_stopwords *sw, const char *text, size_t n);
/* The built-in English list (config/stopwords.txt, embedded at build time). */
int mg_stopwords_default(struct mg_stopwords *sw);
int mg_stopwords_file(struct mg_stopwords *sw, const char *path);
void mg_stopwords_finish(struct mg_stopwords *sw);

/* Add each distinct keyword of text to set (count 1 each); sw may be NULL. */
int mg_words_collect(const char *text, size_t n, const struct mg_stopwords *sw,
                     struct mg_strmap *set);

uint32_t mg_cp_lower(uint32_t cp);

#endif
