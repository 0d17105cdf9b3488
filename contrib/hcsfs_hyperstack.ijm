// hcsfs_hyperstack.ijm: open one well/site of an hcsfs mount as a hyperstack over channels, z and t.
//
// In Fiji: Plugins > Macros > Run... and pick this file; it asks for the mount folder, the well and
// the site. From a shell (ImageJ needs a display; xvfb-run provides one on a server):
//   xvfb-run -a java -jar ij.jar -batch hcsfs_hyperstack.ijm "/mnt/plate7|B03|2"
// A fourth field "stats" prints the mean of every plane (used by hcsfs's tests).
// Planes are named A01_s001_w1_z001_t001.tif; every channel, z and t of the site is loaded, in
// xyczt order, and the pixel size the mount serves (in microns) is kept.

arg = getArgument();
stats = false;
if (arg == "") {
    dir = getDirectory("Choose the hcsfs mount (the folder of flat plane names)");
    Dialog.create("hcsfs hyperstack");
    Dialog.addString("Well", "A01");
    Dialog.addNumber("Site", 1);
    Dialog.show();
    well = Dialog.getString();
    site = Dialog.getNumber();
} else {
    parts = split(arg, "|");
    dir = parts[0];
    well = parts[1];
    site = parseInt(parts[2]);
    stats = parts.length > 3 && parts[3] == "stats";
}
if (!endsWith(dir, "/")) dir = dir + "/";
if (!File.isDirectory(dir)) exit("hcsfs: no such folder: " + dir);
prefix = well + "_s" + IJ.pad(site, 3) + "_w";

channels = newArray(0);
slices = newArray(0);
frames = newArray(0);
names = getFileList(dir);
for (i = 0; i < names.length; i++) {
    name = names[i];
    if (startsWith(name, prefix) && matches(name, ".*_w[0-9]+_z[0-9]+_t[0-9]+[.]tif")) {
        rest = split(substring(name, lengthOf(prefix), lengthOf(name) - 4), "_zt");
        channels = addUnique(channels, parseInt(rest[0]));
        slices = addUnique(slices, parseInt(rest[1]));
        frames = addUnique(frames, parseInt(rest[2]));
    }
}
if (channels.length == 0) exit("hcsfs: no planes named " + prefix + "*.tif in " + dir);
Array.sort(channels);
Array.sort(slices);
Array.sort(frames);

setBatchMode(true);
title = well + "_s" + IJ.pad(site, 3);
for (t = 0; t < frames.length; t++) {
    for (z = 0; z < slices.length; z++) {
        for (c = 0; c < channels.length; c++) {
            path = dir + prefix + channels[c] + "_z" + IJ.pad(slices[z], 3) + "_t" + IJ.pad(frames[t], 3) + ".tif";
            if (!File.exists(path)) exit("hcsfs: missing plane " + path);
            IJ.redirectErrorMessages();
            open(path);
        }
    }
}
if (nImages == 1) {
    rename(title);
} else {
    run("Images to Stack", "name=" + title + " title=[] use");
    run("Stack to Hyperstack...", "order=xyczt(default) channels=" + channels.length + " slices="
        + slices.length + " frames=" + frames.length + " display=Composite");
}
getPixelSize(unit, pixelWidth, pixelHeight);
print("hcsfs-hyperstack: " + title + " " + getWidth() + "x" + getHeight() + " bitdepth=" + bitDepth()
      + " channels=" + channels.length + " slices=" + slices.length + " frames=" + frames.length
      + " pixel=" + pixelWidth + " " + unit);
if (stats) {
    for (t = 1; t <= frames.length; t++)
        for (z = 1; z <= slices.length; z++)
            for (c = 1; c <= channels.length; c++) {
                if (nSlices > 1) Stack.setPosition(c, z, t);
                print("hcsfs-plane: " + channels[c - 1] + " " + slices[z - 1] + " " + frames[t - 1] + " "
                      + d2s(getValue("Mean"), 6));
            }
}
setBatchMode("exit and display");

function addUnique(values, value) {
    for (k = 0; k < values.length; k++)
        if (values[k] == value) return values;
    return Array.concat(values, value);
}
