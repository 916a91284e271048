#!/usr/bin/env python3
"""Embed config/stopwords.txt in the binary as a C string (build step)."""
import sys

src, dst = sys.argv[1], sys.argv[2]
with open(src, 'rb') as f:
    data = f.read()
with open(dst, 'w', encoding='ascii') as out:
    out.write('/* generated from config/stopwords.txt by src/gen_stopwords.py */\n')
    out.write('#include <stddef.h>\n')
    out.write('extern const char mg_default_stopwords[];\n')
    out.write('extern const size_t mg_default_stopwords_len;\n')
    out.write('const char mg_default_stopwords[] = {\n')
    for i in range(0, len(data), 16):
        out.write('    ' + ', '.join('0x%02x' % b for b in data[i:i + 16]) + ',\n')
    out.write('    0x00};\n')
    out.write('const size_t mg_default_stopwords_len = %d;\n' % len(data))
