/*
 * meter.h - kilnd's clock: once a second it meters running sandboxes and debits their agents,
 * pauses the running sandboxes of agents whose wallet is empty, stops sandboxes whose
 * timeout ran out, and notices VMMs that died.
 */
#ifndef KILND_METER_H
#define KILND_METER_H

int meter_start(void);
void meter_stop(void);

#endif
