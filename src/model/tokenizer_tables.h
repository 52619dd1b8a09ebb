/* Data tables for the CLIP tokenizer's text cleaning, generated from Python's standard library by
 * scripts/gen_tokenizer_tables.py into tokenizer_tables.c. Internal to src/model/tokenizer*.c.
 * Every table is sorted by its key (entity names by bytes, code points numerically) for bsearch. */
#ifndef SD_TOKENIZER_TABLES_H
#define SD_TOKENIZER_TABLES_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  const char *name;  /* entity name without '&' (may end in ';') */
  const char *value; /* UTF-8 replacement */
} sd_tok_entity;

typedef struct {
  uint32_t cp; /* code point mapped */
  int n;       /* number of code points it becomes (1..3) */
  uint32_t to[3];
} sd_tok_cpmap;

extern const sd_tok_entity sd_html5_entities[]; /* html.entities.html5 */
extern const size_t sd_html5_entities_count;
extern const sd_tok_entity sd_ftfy_entities[]; /* ftfy chardata.HTML_ENTITIES, '&' dropped */
extern const size_t sd_ftfy_entities_count;
extern const sd_tok_cpmap sd_html_invalid_charrefs[]; /* html._invalid_charrefs */
extern const size_t sd_html_invalid_charrefs_count;
extern const uint32_t sd_html_invalid_codepoints[]; /* html._invalid_codepoints */
extern const size_t sd_html_invalid_codepoints_count;
extern const sd_tok_cpmap sd_lower_map[]; /* str.lower, full mapping */
extern const size_t sd_lower_map_count;
extern const uint32_t sd_space_codepoints[]; /* str.isspace */
extern const size_t sd_space_codepoints_count;
extern const sd_tok_cpmap sd_width_map[]; /* ftfy WIDTH_MAP */
extern const size_t sd_width_map_count;
extern const sd_tok_cpmap sd_ligature_map[]; /* ftfy LIGATURES */
extern const size_t sd_ligature_map_count;
extern const sd_tok_cpmap sd_c1_map[]; /* ftfy fix_c1_controls */
extern const size_t sd_c1_map_count;

#endif
