/*
 * json_schema.h — compiles a JSON Schema (the subset structured output
 * needs) into a grammar of runtime/grammar.h, which then only lets a model
 * write JSON that validates against it.
 *
 * Supported: type (object, array, string, number, integer, boolean, null,
 * or an array of them), properties, required, additionalProperties
 * (false, true or a schema), items, minItems, maxItems, enum, const,
 * minLength, maxLength, anyOf and oneOf whose alternatives start
 * differently (different JSON types or distinct constants), $ref to any
 * JSON pointer of the document ("#", "#/$defs/name", "#/definitions/name"),
 * and the annotations (title, description, default, examples, ...), which
 * are ignored. Any other keyword is refused with INVALID_ARGUMENT naming it
 * and where it is (a JSON pointer), as are contradictions (minItems above
 * maxItems, a required property additionalProperties forbids, schema
 * false).
 *
 * What the grammar writes is a subset of what the schema accepts: declared
 * properties in the schema's order, additional properties only after them
 * and only where the schema allows them (absent additionalProperties beside
 * properties writes none), compact JSON. Everything it writes validates.
 */
#ifndef SLM_JSON_SCHEMA_H
#define SLM_JSON_SCHEMA_H

#include <stddef.h>

#include "grammar.h"

/* Compiles schema[0..len) (JSON text) into a finished grammar (*out, free
 * with slm_grammar_free). INVALID_ARGUMENT with a message naming the
 * problem; OUT_OF_MEMORY. */
slm_status slm_json_schema_compile(const char *schema, size_t len, slm_grammar **out);

#endif
