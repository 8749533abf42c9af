/*
 * progress.c — progress of long work (loading a model, writing a GGUF) on
 * stderr, shaped by where stderr goes. A terminal gets one line redrawn in
 * place with "\r", and only when the shown percentage changes; a file or
 * pipe gets at most five whole lines (0, 25, 50, 75, 100%), or none when
 * the caller did not ask for plain lines — logs stay readable.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void draw(const slm_cli_progress *p, int percent)
{
    if (p->tty)
        fprintf(stderr, "\r%s %3d%%", p->label, percent);
    else
        fprintf(stderr, "%s %d%%\n", p->label, percent);
    fflush(stderr);
}

void slm_cli_progress_start(slm_cli_progress *p, bool plain, const char *fmt, ...)
{
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->label, sizeof p->label, fmt, ap);
    va_end(ap);
    p->tty = isatty(2);
    p->plain = plain;
    if (p->tty || p->plain)
        draw(p, 0);
}

void slm_cli_progress_update(float fraction, void *user)
{
    slm_cli_progress *p = user;
    float f = fraction < 0 ? 0 : fraction > 1 ? 1 : fraction;
    if (p->tty) {
        int percent = (int)(f * 100 + 0.5f);
        if (percent != p->shown) {
            p->shown = percent;
            draw(p, percent);
        }
    } else if (p->plain) {
        /* 100% is left to _end, which knows that the work succeeded. */
        int quarters = (int)(f * 4);
        if (quarters > 3)
            quarters = 3;
        if (quarters > p->shown) {
            p->shown = quarters;
            draw(p, 25 * quarters);
        }
    }
}

void slm_cli_progress_end(slm_cli_progress *p, bool ok)
{
    if (p->tty) {
        if (ok && p->shown != 100)
            draw(p, 100);
        fputc('\n', stderr);
    } else if (p->plain && ok) {
        draw(p, 100);
    }
}
