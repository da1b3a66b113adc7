/*
 * kernels.c - the interpreter scripts of code contexts (context.c), compiled into kiln-init.
 *
 * They travel inside the binary rather than as files in the initramfs: kiln-init moves the
 * overlay root over the initramfs at boot, after which its files are out of reach, and a
 * script inside the binary cannot drift from the agent that speaks to it.  Any image with
 * python3 can then run contexts; images carry nothing of kiln's.  Each script ends with a NUL.
 */
__asm__(".section .rodata\n"
	".global python_kernel_src\n"
	".global python_kernel_end\n"
	".global node_kernel_src\n"
	".global node_kernel_end\n"
	"python_kernel_src:\n"
	".incbin \"src/guest/context/python_kernel.py\"\n"
	"python_kernel_end:\n"
	".byte 0\n"
	"node_kernel_src:\n"
	".incbin \"src/guest/context/node_kernel.js\"\n"
	"node_kernel_end:\n"
	".byte 0\n"
	".previous\n");
